"""Training from the original-format features: loss goes down, resume is bit-exact, the export loads."""

from __future__ import annotations

import copy

import pytest
import torch


def test_short_training_run_learns_and_exports(trained_tiny):
    from rlcf_bench_models._clipcap.model import load_captioner

    folder, summary, clip = trained_tiny
    curve = summary["curve"]
    assert curve[-1][1] < 0.5 * curve[0][1]
    for name in ("captioner.json", "mapper.safetensors", "decoder/config.json", "tokenizer/vocab.json",
                 "train_state/latest.safetensors"):
        assert (folder / name).exists(), name
    model = load_captioner(folder, "cpu", clip=clip)
    assert model.version and model.settings.training["steps"] == 200


def test_features_pickle_round_trip(tmp_path, make_tiny_features):
    import pickle

    from rlcf_bench_models._clipcap.features import load_features, save_features

    _, feats = make_tiny_features(4)
    loaded = load_features(save_features(feats, tmp_path / "f.pt"))
    assert loaded["captions"] == feats["captions"]
    # the original release's format: a plain pickle of arrays/tensors, read by a restricted unpickler
    (tmp_path / "orig.pkl").write_bytes(pickle.dumps({k: v for k, v in feats.items()}))
    assert torch.equal(load_features(tmp_path / "orig.pkl")["clip_image_embedding"], feats["clip_image_embedding"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"captions": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        load_features(tmp_path / "evil.pkl")
    assert loaded["captions"] == feats["captions"]
    assert torch.equal(loaded["clip_image_embedding"], feats["clip_image_embedding"])
    assert len(loaded["image_index"]) == 12  # three captions per image


def _train(feats, base, out, steps, kind="capdec"):
    from rlcf_bench_models._clipcap.train import TrainConfig, train_captioner

    cfg = TrainConfig(kind=kind, steps=6, batch_size=4, lr=1e-3, warmup=2, train_decoder=True, checkpoint_every=3)
    torch.manual_seed(0)
    return train_captioner(feats, out, clip_model="tiny-clip", mapper_config=base.settings.mapper,
                           decoder=copy.deepcopy(base.decoder), tokenizer=base.tokenizer, tokenizer_dir=None,
                           config=cfg if steps == 6 else TrainConfig(**{**cfg.__dict__, "steps": steps}),
                           progress=False, log=lambda *_: None)


def test_resumed_training_equals_uninterrupted(tmp_path, make_tiny_features):
    from safetensors.torch import load_file

    from rlcf_bench_fixtures.tiny import build_tiny_captioner

    _, feats = make_tiny_features(4)
    base = build_tiny_captioner("cpu")
    _train(feats, base, tmp_path / "straight", 6)
    # interrupted after step 3 (the checkpoint), then re-run with the same arguments
    _train(feats, base, tmp_path / "resumed", 3)
    state = (tmp_path / "resumed" / "train_state" / "latest.json")
    import json

    meta = json.loads(state.read_text())
    meta["run_key"]["config"]["steps"] = 6  # as if the 6-step run had been killed at step 3
    state.write_text(json.dumps(meta))
    _train(feats, base, tmp_path / "resumed", 6)
    a = load_file(str(tmp_path / "straight" / "mapper.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "mapper.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
