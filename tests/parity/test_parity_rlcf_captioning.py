"""RLCF captioning (method ``rlcf``, task captioning) against mzhaoshuai/RLCF ``caption/`` (the whole
episode of ``capdec_tta.make_preds_policy_batch``, with its OPT fork's beam search under
transformers 4.26; ``tools/parity/record_rlcf_captioning.py``): per image and step, the mapper's
prefix fed to the beam search, the K candidates, their CLIP scores and advantages, the REINFORCE
loss, and the final caption, on a tiny captioner both code bases load (``tools/parity/tiny_captioner.py``)
with the tiny CLIPs of the other RLCF tests (docs/parity.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from parity_files import tools_module
from tpt_family_harness import check_weights, described, reward_model

#: fp32 on the CPU, one thread; the two OPT implementations sum in different orders
PREFIX_ATOL = 1e-4
SCORE_ATOL = 1e-5
LOSS_ATOL = 1e-6


def tiny_captioner_helper() -> Any:
    return tools_module("tiny_captioner.py")


def captioner(helper: Any, spec: dict[str, Any], folder: Path) -> Any:
    """The recorded tiny captioner, loaded by this project's classes (tokenizer through ``load_tokenizer``)."""
    from transformers import OPTForCausalLM

    from rlcf_bench_models._clipcap.mapper import MapperConfig, TransformerMapper
    from rlcf_bench_models._clipcap.model import CaptionerSettings, ClipCaptioner, tiny_opt_config
    from rlcf_bench_models._clipcap.tokenizer import SPECIAL_TOKENS, load_tokenizer

    tc = tiny_captioner_helper()
    text = spec["official_text"]
    vocab, merges = tc.tokenizer_files()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (folder / "special_tokens.json").write_text(json.dumps(SPECIAL_TOKENS))
    tokenizer = load_tokenizer(folder)
    d = spec["decoder"]
    config = tiny_opt_config(len(vocab), hidden=d["hidden"], layers=d["layers"], heads=d["heads"], ffn=d["ffn"],
                             max_positions=d["max_positions"])
    config.tie_word_embeddings = False
    decoder = OPTForCausalLM(config)
    decoder.load_state_dict(tc.decoder_weights(decoder.state_dict()), strict=True)
    assert helper.weights_fingerprint(decoder.state_dict()) == text["decoder_weights"], "the tiny OPT differs from the recorded one"
    mcfg = MapperConfig(**spec["mapper"])
    mapper = TransformerMapper(mcfg)
    mapper.load_state_dict(tc.draw_weights({k: v.shape for k, v in mapper.state_dict().items()}, tc.MAPPER_SEED))
    renamed = {tc.official_mapper_name(k): v for k, v in mapper.state_dict().items()}
    assert helper.weights_fingerprint(renamed) == text["mapper_weights"], "the tiny mapper differs from the recorded one"
    for p in mapper.parameters():
        p.requires_grad_(False)
    settings = CaptionerSettings(kind="clipcap", clip_model="tiny", mapper=mcfg, normalize_prefix=True, eos="newline",
                                 append_eos=False, max_new_tokens=50)
    clip = helper.tiny_vlm(spec["policy_seed"])
    return ClipCaptioner(clip, mapper.eval(), decoder, tokenizer, settings, name="parity-captioner")


def episodes(helper: Any, meta: dict[str, str], options: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Our method through its public path (setup; per image reset → adapt → predict), recording
    what the golden file holds."""
    from rlcf_bench.device import AmpHelper, SectionTimer
    from rlcf_bench.types import Batch, MethodContext, RunProtocol
    from rlcf_bench_rlcf._captioning import RLCFCaption

    spec = described(meta)
    check_weights(helper, spec)
    model = captioner(helper, spec, folder)
    reward = reward_model(helper, spec, model.clip)
    amp = AmpHelper(torch.device("cpu"), "fp32")
    ctx = MethodContext(task="captioning", protocol=RunProtocol(n_views=1, precision="fp32"),
                        device=torch.device("cpu"), amp=amp, model=model, reward_model=reward)
    ctx.timer = SectionTimer(torch.device("cpu"))
    method = RLCFCaption(RLCFCaption.config_cls(**options))
    method.setup(ctx)
    rec: dict[str, list[Any]] = {"prefix": [], "texts": [], "scores": [], "loss": []}
    real_generate, real_score, real_step = model.generate, reward.score, amp.backward_step

    def generate(prefix: torch.Tensor, *a: Any, **k: Any) -> list[list[str]]:
        rec["prefix"].append(prefix.detach().clone())
        out: list[list[str]] = real_generate(prefix, *a, **k)
        rec["texts"].append(out[0])
        return out

    def score(*a: Any, **k: Any) -> torch.Tensor:
        out: torch.Tensor = real_score(*a, **k)
        rec["scores"].append(out.detach().float().clone())
        return out

    def backward_step(loss: torch.Tensor, optimizer: Any) -> None:
        rec["loss"].append(float(loss.detach()))
        real_step(loss, optimizer)

    model.generate, reward.score, amp.backward_step = generate, score, backward_step  # type: ignore[method-assign]
    images = helper.tiny_images(spec["n_images"], spec["images_seed"])
    captions = []
    for i in range(len(images)):
        batch = Batch(sample_ids=(f"{i}",), indices=(i,), images=images[i : i + 1])
        method.reset()
        method.adapt(batch)
        captions.extend(method.predict(batch).captions)
    n, steps = spec["n_images"], options["steps"]
    scores = torch.stack(rec["scores"]).view(n, steps, -1) if steps else torch.zeros(n, 0, 0)
    return {"prefix": torch.cat(rec["prefix"]).view(n, steps + 1, *rec["prefix"][0].shape[1:]),
            "scores": scores, "rewards": scores - scores.mean(-1, keepdim=True),
            "loss": torch.tensor(rec["loss"]).view(n, steps),
            "candidates": [[rec["texts"][i * (steps + 1) + t] for t in range(steps)] for i in range(n)],
            "captions": captions}


@pytest.fixture(scope="module")
def official() -> tuple[dict[str, Any], dict[str, str]]:
    from parity_files import load_golden

    return load_golden("rlcf_captioning")


def test_rlcf_captioning_matches_official(official, tiny_official_clip, tmp_path):
    tensors, meta = official
    spec = described(meta)
    ours = episodes(tiny_official_clip, meta, spec["options"], tmp_path)
    text = spec["official_text"]
    prefix_diff = (ours["prefix"] - tensors["prefix"]).abs().max()
    assert prefix_diff <= PREFIX_ATOL, f"max |Δ prefix| {prefix_diff:.3g}"
    assert ours["candidates"] == text["candidates"], "the K beam-search candidates differ"
    score_diff = (ours["scores"] - tensors["scores"]).abs().max()
    assert score_diff <= SCORE_ATOL, f"max |Δ CLIP score| {score_diff:.3g}"
    assert (ours["rewards"] - tensors["rewards"]).abs().max() <= SCORE_ATOL
    loss_diff = (ours["loss"] - tensors["loss"]).abs().max()
    assert loss_diff <= LOSS_ATOL, f"max |Δ loss| {loss_diff:.3g}: {ours['loss'].tolist()} vs {tensors['loss'].tolist()}"
    assert ours["captions"] == text["captions"], "final captions differ"


def test_rlcf_captioning_padding_rule_is_what_is_compared(official, tiny_official_clip, tmp_path):
    """The official loss of the first step, recomputed from its candidates and prefix: equal with
    ``pad_quirk=true`` (the comparison above), off by far more than the tolerance with the default
    (padding excluded), so the episode test pins the official padded loss."""
    tensors, meta = official
    spec = described(meta)
    model = captioner(tiny_official_clip, spec, tmp_path)
    candidates = spec["official_text"]["candidates"][0][0]
    prefix = tensors["prefix"][0, 0:1].expand(len(candidates), -1, -1)
    ids, mask = model.encode_captions(candidates)
    advantages = tensors["rewards"][0, 0]
    with torch.no_grad():
        losses = {quirk: float((advantages * model.caption_losses(prefix, ids, mask, pad_quirk=quirk)).mean())
                  for quirk in (True, False)}
    official_loss = float(tensors["loss"][0, 0])
    assert abs(losses[True] - official_loss) <= LOSS_ATOL, (losses, official_loss)
    assert abs(losses[False] - official_loss) > 10 * LOSS_ATOL, (losses, official_loss)
