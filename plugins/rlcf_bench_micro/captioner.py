"""The micro suite's captioner ``micro-captioner`` (kind ``captioner``): a small ClipCap.

``micro-student`` image features (normalised) → mapper (8 + 8 tokens of width 192, 2 layers) →
a 2-layer OPT of width 192 with a byte-level BPE trained on the suite's training captions. Trained
on the ``photo`` domain's *training* split only (``train_micro_captioner``, run by
``rlcf-bench caption train --preset micro``), evaluated on the shifted test domains. Weights live
in ``captioner/`` (a standard captioner checkpoint folder, loadable as ``clipcap@DIR`` too).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlcf_bench import ModelSpec, hookimpl

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rlcf_bench.session import ComponentSession

CAPTIONER_DIR = Path(__file__).parent / "captioner"
NAME = "micro-captioner"

# The recipe (recorded in captioner.json by the training code).
RECIPE: dict[str, Any] = {
    "clip": "micro-student", "domain": "photo", "n_images": 3000, "vocab_size": 512,
    "mapper": {"dim": 192, "clip_length": 8, "prefix_length": 8, "layers": 2, "heads": 4, "mlp_ratio": 2.0},
    "decoder": {"hidden": 192, "layers": 2, "heads": 4, "ffn": 384, "max_positions": 64},
    "train": {"kind": "clipcap", "steps": 1200, "batch_size": 64, "lr": 1e-3, "warmup": 200, "train_decoder": True,
              "checkpoint_every": 250, "grad_clip": 1.0},
    "max_new_tokens": 20, "tta": {"k": 10, "lr": 1e-4},
}


def train_preset(out_dir: str | Path | None, **kwargs: Any) -> tuple[dict[str, Any], Path]:
    """``rlcf-bench caption train --preset micro``: :func:`train_micro_captioner` into ``out_dir``
    (default: the shipped folder)."""
    folder = Path(out_dir) if out_dir else CAPTIONER_DIR
    return train_micro_captioner(folder, **kwargs), folder


#: The ``caption train`` presets this plugin offers (``rlcf_bench_models.clipcap_commands``).
CAPTION_PRESETS = {"micro": train_preset}


def train_micro_captioner(out_dir: str | Path = CAPTIONER_DIR, *, session: ComponentSession, seed: int = 0,
                          clip: str | None = None,
                          steps: int | None = None, n_images: int | None = None, progress: bool = True,
                          keep_state: bool = False, log: Any = print) -> dict[str, Any]:
    """Generate the photo training split, extract CLIP features, train and export the captioner.

    The resumable training state (``train_state/``, weights + AdamW moments) is removed after a
    completed run unless ``keep_state`` (it is not shipped)."""
    import shutil
    import tempfile

    import torch
    from transformers import OPTForCausalLM

    from rlcf_bench_models._clipcap.features import extract_features
    from rlcf_bench_models._clipcap.mapper import MapperConfig
    from rlcf_bench_models._clipcap.model import tiny_opt_config
    from rlcf_bench_models._clipcap.tokenizer import load_tokenizer, train_bpe
    from rlcf_bench_models._clipcap.train import TrainConfig, train_captioner

    from .generator import DATA_VERSION, VOCABULARY, generate, references

    r = RECIPE
    clip_name = clip or r["clip"]
    n = int(n_images or r["n_images"])
    vlm = session.model(clip_name)
    log(f"generating {n} {r['domain']} training scenes and extracting {clip_name} features")
    data = generate(r["domain"], n, seed=seed, split="train")
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()
    feats = extract_features(vlm, lambda i: images[i], n, lambda i: references(data.scenes[i]), progress=progress)
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = train_bpe(list(feats["captions"]) + list(VOCABULARY), Path(tmp) / "tokenizer", r["vocab_size"])
        tokenizer = load_tokenizer(tok_dir)
        torch.manual_seed(seed)
        decoder = OPTForCausalLM(tiny_opt_config(len(tokenizer), hidden=r["decoder"]["hidden"],
                                                 layers=r["decoder"]["layers"], heads=r["decoder"]["heads"],
                                                 ffn=r["decoder"]["ffn"], max_positions=r["decoder"]["max_positions"]))
        mcfg = MapperConfig(prefix_dim=int(feats["clip_image_embedding"].shape[1]), **r["mapper"])
        tcfg = TrainConfig(seed=seed, **{**r["train"], **({"steps": steps} if steps else {})})
        summary = train_captioner(
            feats, out, clip_model=clip_name, mapper_config=mcfg, decoder=decoder, tokenizer=tokenizer,
            tokenizer_dir=tok_dir, config=tcfg, progress=progress, log=log,
            settings_extra={"max_new_tokens": r["max_new_tokens"], "tta": dict(r["tta"]),
                            "training": {"clip_version": str(getattr(vlm, "version", ""))}},
        )
    if not keep_state:
        shutil.rmtree(out / "train_state", ignore_errors=True)
    summary.update(data_version=DATA_VERSION, n_images=n, clip=clip_name)
    return summary


def _load(name: str, device: Any, *, session: ComponentSession) -> Any:
    from rlcf_bench_models._clipcap.model import load_captioner

    if not (CAPTIONER_DIR / "captioner.json").is_file():
        raise FileNotFoundError(f"{CAPTIONER_DIR} holds no trained captioner; run `rlcf-bench caption train --preset micro`")
    return load_captioner(CAPTIONER_DIR, device, name=NAME, session=session)


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    from rlcf_bench_models._clipcap.files import fingerprint  # no torch import

    version = fingerprint(CAPTIONER_DIR) if (CAPTIONER_DIR / "captioner.json").is_file() else "untrained"
    return [ModelSpec(name=NAME, version=version, load=_load, kind="captioner",
                      description="micro suite captioner: small ClipCap on micro-student features, trained on photo")]
