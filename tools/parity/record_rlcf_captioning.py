"""Record RLCF captioning (method ``rlcf``, task captioning) from mzhaoshuai/RLCF ``caption/``: the
whole official episode, ``capdec_tta.make_preds_policy_batch``, run as it is on a CPU with its
``CAP_TTA`` wrapper, ``ClipCaptionPrefixV2`` (transformer mapper), its OPT fork
(``image_llm/models/modeling_opt.py``) and beam search (``generate_opt.generate``), and
``clip_reward.CLIPRewards``.

    pip install --target /tmp/rlcf-caption-extra --no-deps transformers==4.26.1 tokenizers==0.13.3 \\
        huggingface_hub==0.16.4 && pip install --target /tmp/rlcf-caption-extra requests
    PYTHONPATH=/tmp/rlcf-caption-extra .venv/bin/python tools/parity/record_rlcf_captioning.py \\
        --official /tmp/official-RLCF

Extra packages: the OPT fork has ``generate`` only under the transformers its requirements name
(``>=4.25,<4.27``), so the script runs with transformers 4.26.1 from a separate folder (never the
project's environment).

Stand-ins, none in the algorithm: ``clip.load`` returns the tiny CLIP of ``TPT/clip/model.py``
(``tiny`` policy seed 0, ``tiny-reward`` reward seed 1, as the other RLCF recordings); the datasets
module (which imports ``lmdb``) is replaced by a stand-in yielding the seeded images; the data
loader runs without worker processes; the ``GradScaler`` is a recorder that steps the optimizer
as a disabled scaler does (the official scaler is disabled on a machine without CUDA); the
captioner (``tiny_captioner.py``: hand-written BPE tokenizer loaded by ``AutoTokenizer``
``use_fast=False`` as the official ``main``, 2-layer OPT, 1-layer mapper) is saved as a checkpoint
that ``CAP_TTA`` loads; the OPT, which the official ``LLMModel`` loads in fp16, is cast to fp32
first (fp32 on the CPU, as every parity test).

Inputs: 3 seeded 32×32 images, K = 4 beams, 3 steps at lr 1e-3 (a tiny random mapper moves too
little at the scripts' 2e-6), weight decay 0, ``--normalize_prefix``. Golden
``rlcf_captioning.safetensors``: ``scores`` and ``rewards`` [3, 3, 4] (CLIP scores of the
candidates and the advantages), ``loss`` [3, 3], ``prefix`` [3, 4, 4, 64] (the mapper's output
fed to each beam search: the 3 steps' and the final one); the candidates and the final captions
as JSON in the metadata (``official_text``).
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import official_clip
import tiny_captioner as tc
import torch
import tpt_family as fam

N_IMAGES = 3
IMAGES_SEED = 21
OPTIONS = {"steps": 3, "lr": 1e-3, "k": 4, "weight_decay": 0.0, "pad_quirk": True}


def images() -> torch.Tensor:
    return official_clip.tiny_images(N_IMAGES, IMAGES_SEED)


class Dataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """What ``make_preds_policy_batch`` reads of the official caption datasets."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.images = images()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "caption": "", "image_id": i, "image_subpath": f"{i}.jpg"}


class RecordingScaler:
    """Records the loss; steps the optimizer as a disabled ``GradScaler`` does."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        self.losses.append(float(loss))
        return loss

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def update(self) -> None:
        pass


def import_official(parent: Path) -> tuple[Any, Any, Any]:
    sys.path.insert(0, str(parent))
    stub = types.ModuleType("image_llm.datasets")
    stub.COCOCapDatasetForEmbedding = stub.Flickr30kCapDatasetForEmbedding = Dataset  # type: ignore[attr-defined]
    stub.NocapsCapDatasetForEmbedding = Dataset  # type: ignore[attr-defined]
    sys.modules["image_llm.datasets"] = stub
    official_clip._shim_pkg_resources()
    with official_clip.pretend_paths_exist():
        import capdec_tta
        import clip_reward
    import image_llm.models.modules as modules
    return capdec_tta, clip_reward, modules


def use_tiny_clip(tpt_parent: Path) -> None:
    seeds = {fam.REWARD_ARCH: fam.REWARD_SEED}

    def load(name: str, device: Any = "cpu", jit: bool = False, download_root: Any = None) -> tuple[Any, None]:
        return official_clip.official_clip_model(tpt_parent, seeds.get(name, fam.POLICY_SEED)), None

    sys.modules["image_llm.clip.clip"].load = load  # type: ignore[attr-defined]


def official_captioner(modules: Any, folder: Path) -> tuple[Any, Any, Path]:
    """``(tokenizer, ClipCaptionPrefixV2 in fp32, checkpoint path)`` built from ``tiny_captioner``."""
    from image_llm.models.modeling_opt import OPTForCausalLM
    from transformers import AutoTokenizer, OPTConfig

    from rlcf_bench_models._clipcap.mapper import MapperConfig, TransformerMapper

    vocab, merges = tc.tokenizer_files()
    tok_dir = folder / "opt-tiny"
    tok_dir.mkdir()
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "bos_token": "</s>", "eos_token": "</s>",
        "pad_token": "<pad>", "unk_token": "<unk>", "errors": "replace"}))
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), use_fast=False)
    d = tc.DECODER
    cfg = OPTConfig(vocab_size=len(vocab), hidden_size=d["hidden"], num_hidden_layers=d["layers"], ffn_dim=d["ffn"],
                    num_attention_heads=d["heads"], max_position_embeddings=d["max_positions"],
                    word_embed_proj_dim=d["hidden"], pad_token_id=1, bos_token_id=2, eos_token_id=2, dropout=0.0,
                    attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0, do_layer_norm_before=True,
                    tie_word_embeddings=False)
    OPTForCausalLM(cfg).save_pretrained(str(tok_dir))
    m = tc.MAPPER
    cap = modules.ClipCaptionPrefixV2(m["prefix_length"], clip_length=m["clip_length"], prefix_size=m["prefix_dim"],
                                      num_layers=m["layers"], mapping_type=modules.MappingType.Transformer,
                                      config_dir=str(tok_dir))
    cap.llm.float()
    decoder = tc.decoder_weights(cap.llm.llm.state_dict())
    cap.llm.llm.load_state_dict(decoder, strict=True)
    ours = TransformerMapper(MapperConfig(**m)).state_dict()  # type: ignore[arg-type]
    mapper = tc.draw_weights({k: v.shape for k, v in ours.items()}, tc.MAPPER_SEED)
    cap.clip_project.load_state_dict({tc.official_mapper_name(k): v for k, v in mapper.items()}, strict=True)
    ckpt = folder / "ckpt.pt"
    torch.save({"state_dict": cap.state_dict()}, str(ckpt))
    return tokenizer, cap, ckpt


def run(capdec_tta: Any, clip_reward: Any, modules: Any, folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from image_llm.custom_models import CAP_TTA

    tokenizer, cap, ckpt = official_captioner(modules, folder)
    model = CAP_TTA(cap, "cpu", cap_ckpt=str(ckpt))
    args = types.SimpleNamespace(
        out_results_file=str(folder / "results.json"), out_clipscore_file=str(folder / "clipscore.json"),
        clip_model_type="tiny", download_root=None, dataset_mode=0, annotations="", images_root="",
        normalize_prefix=True, tta_steps=OPTIONS["steps"], prefix_length=tc.MAPPER["prefix_length"],
        use_nucleus_sampling=0, reward_arch=fam.REWARD_ARCH, multiple_reward_models=0, reward_amplify=0,
        sample_k=OPTIONS["k"], reward_process=1, process_batch=0, weighted_scores=1)
    reward_model = clip_reward.get_reward_model("cpu", args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=OPTIONS["lr"], eps=1e-06,
                                  weight_decay=OPTIONS["weight_decay"])
    optim_state = copy.deepcopy(optimizer.state_dict())
    scaler = RecordingScaler()
    prefixes: list[torch.Tensor] = []
    texts: list[list[str]] = []
    scores: list[torch.Tensor] = []
    rewards: list[torch.Tensor] = []
    real_generate, real_post = capdec_tta.opt_generate, reward_model.rewards_post_process

    def generate(*a: Any, query_embeds: torch.Tensor, **k: Any) -> list[str]:
        prefixes.append(query_embeds.detach().clone())
        out: list[str] = real_generate(*a, query_embeds=query_embeds, **k)
        texts.append(list(out))
        return out

    def post(clip_score: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
        scores.append(clip_score.detach().clone().flatten())
        out: torch.Tensor = real_post(clip_score, *a, **k)
        rewards.append(out.detach().clone())
        return out

    capdec_tta.opt_generate = generate
    reward_model.rewards_post_process = post
    real_loader = torch.utils.data.DataLoader
    torch.utils.data.DataLoader = lambda ds, **kw: real_loader(ds, **{**kw, "num_workers": 0})  # type: ignore[misc]
    try:
        capdec_tta.make_preds_policy_batch(model, reward_model, tokenizer, "cpu", optimizer=optimizer,
                                          optim_state=optim_state, batch_size=16, scaler=scaler, args=args)
    finally:
        torch.utils.data.DataLoader = real_loader  # type: ignore[misc]
        capdec_tta.opt_generate = real_generate
    steps = OPTIONS["steps"]
    captions = [r["caption"] for r in json.loads((folder / "results.json").read_text())]
    tensors = {"scores": torch.stack(scores).view(N_IMAGES, steps, -1),
               "rewards": torch.stack(rewards).view(N_IMAGES, steps, -1),
               "loss": torch.tensor(scaler.losses).view(N_IMAGES, steps),
               "prefix": torch.cat(prefixes).view(N_IMAGES, steps + 1, tc.MAPPER["prefix_length"], -1)}
    candidates = [[texts[i * (steps + 1) + t] for t in range(steps)] for i in range(N_IMAGES)]
    text = {"candidates": candidates, "captions": captions,
            "decoder_weights": official_clip.weights_fingerprint(tc.decoder_weights(cap.llm.llm.state_dict())),
            "mapper_weights": official_clip.weights_fingerprint(model.initial_state_dict)}
    return tensors, text


def main() -> None:
    p = fam.parser(__doc__.split("\n\n")[0])
    a = p.parse_args()
    repository, pinned = fam.RLCF
    commit, record = fam.checkout_commit(a.official, pinned, a.allow_other_commit)
    torch.set_num_threads(1)
    capdec_tta, clip_reward, modules = import_official(a.official / "caption")
    use_tiny_clip(a.official / "TPT")
    with tempfile.TemporaryDirectory() as tmp, fam.cpu_cuda_calls():
        tensors, text = run(capdec_tta, clip_reward, modules, Path(tmp))
    print(json.dumps(text, indent=1))
    print({k: tuple(v.shape) for k, v in tensors.items()}, "loss", tensors["loss"].tolist())
    if record:
        described = fam.inputs(method="rlcf", task="captioning", options=OPTIONS, n_images=N_IMAGES,
                               images_seed=IMAGES_SEED, official_text=text, decoder=tc.DECODER, mapper=tc.MAPPER)
        fam.write_golden(a.out, "rlcf_captioning", tensors, repository=repository, commit=commit,
                         script=Path(__file__).name, described=described)


if __name__ == "__main__":
    main()
