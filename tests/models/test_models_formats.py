"""open_clip backend: every on-disk format loads back through the public model names with the
original weights and outputs; untrusted content is refused without being executed."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from models_helpers import OPENAI_TINY, TEXTS, openai_style_state_dict, tiny_config

from rlcf_bench.tta.vlm import OpenClipVLM


def assert_same_model(vlm: Any, ref: Any, image_size: int) -> None:
    """Same weights bit for bit, same tokens, and the same features (truncated or not)."""
    import open_clip

    assert isinstance(vlm, OpenClipVLM)
    got, want = vlm.module.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value.to(got[key].dtype)), key
    tokens = vlm.tokenize(TEXTS)
    assert torch.equal(tokens, open_clip.SimpleTokenizer(context_length=tokens.shape[1])(list(TEXTS)))
    torch.manual_seed(1)
    images = torch.randn(3, 3, image_size, image_size)
    with torch.no_grad():
        torch.testing.assert_close(vlm.encode_image(images), ref.encode_image(images), rtol=0, atol=1e-5)
        torch.testing.assert_close(vlm.encode_text(tokens, truncate=False), ref.encode_text(tokens), rtol=0, atol=1e-5)
        torch.testing.assert_close(vlm.encode_text(tokens), ref.encode_text(tokens), rtol=0, atol=1e-5)
    assert vlm.logit_scale == pytest.approx(float(ref.logit_scale.detach().exp()))


def _save(fmt: str, sd: dict[str, torch.Tensor], path: Path) -> None:
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif fmt == "pt":
        torch.save(sd, path)
    elif fmt == "bin-legacy":
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif fmt == "train-ckpt":  # open_clip's training checkpoint: wrapper, DDP prefixes, optimizer state
        torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in sd.items()},
                    "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}}, path)
    else:  # pragma: no cover
        raise AssertionError(fmt)


@pytest.mark.parametrize(("fmt", "filename", "detected"), [
    ("safetensors", "w.safetensors", "safetensors"),
    ("pt", "w.pt", "torch-zip"),
    ("bin-legacy", "open_clip_pytorch_model.bin", "torch-legacy"),
    ("train-ckpt", "epoch_3.pt", "torch-zip"),
])
def test_open_clip_checkpoint_formats_round_trip(load: Any, tiny_clip: Any, tiny_dir: Path, tmp_path: Path,
                                                 fmt: str, filename: str, detected: str) -> None:
    from rlcf_bench_models._formats import detect_format

    path = tmp_path / filename
    _save(fmt, tiny_clip.state_dict(), path)
    assert detect_format(path) == detected
    vlm = load(f"{tiny_dir / 'tiny.json'}@{path}")
    assert_same_model(vlm, tiny_clip, 32)
    assert vlm.version.startswith(f"{filename}:")


def test_config_json_carries_preprocessing_and_sidecars(load: Any, tiny_clip: Any, tiny_dir: Path,
                                                        tmp_path: Path) -> None:
    # open_clip's hub layout: open_clip_config.json (model_cfg + preprocess_cfg) beside the weights
    hub = tmp_path / "hub"
    hub.mkdir()
    shutil.copy(tiny_dir / "tiny.safetensors", hub / "open_clip_model.safetensors")
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear", "resize_mode": "squash"}
    (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_config(), "preprocess_cfg": pre}))
    vlm = load(f"my-tiny@{hub / 'open_clip_model.safetensors'}")  # ARCH is only a label: the sidecar wins
    assert_same_model(vlm, tiny_clip, 32)
    assert (vlm.image_size, vlm.mean, vlm.std) == (32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert vlm.preprocess_cfg["interpolation"] == "bilinear" and vlm.preprocess_cfg["resize_mode"] == "squash"

    # <weights>.json sidecar (bare config with a preprocess_cfg key) takes precedence over open_clip_config.json
    (hub / "open_clip_model.safetensors.json").write_text(json.dumps({**tiny_config(), "preprocess_cfg": {"mean": [0.1] * 3}}))
    assert load(f"ViT-B-16@{hub / 'open_clip_model.safetensors'}").mean == (0.1, 0.1, 0.1)


def test_openai_torchscript_archive_is_read_without_running_its_code(load: Any, tmp_path: Path) -> None:
    """A traced OpenAI-style archive loads (weights only, QuickGELU detected) and matches what
    open_clip's OpenAI loader builds from the same weights."""
    from open_clip.model import CLIP, build_model_from_openai_state_dict, convert_weights_to_fp16

    from rlcf_bench_models._formats import detect_format, read_torchscript_weights

    sd = openai_style_state_dict()

    class Archived(CLIP):
        def probe(self, x: torch.Tensor) -> torch.Tensor:  # a cheap traced entry point; all weights are saved
            return x * self.logit_scale.exp()

    source = Archived(**OPENAI_TINY, quick_gelu=True).eval()
    convert_weights_to_fp16(source)  # OpenAI's archives are partly fp16, like the state dict
    # OpenAI's archives also keep context_length/vocab_size tensors; open_clip's CLIP already has
    # attributes of those names, so only input_resolution is added here.
    del sd["context_length"], sd["vocab_size"]
    source.register_buffer("input_resolution", sd["input_resolution"])
    source.load_state_dict(sd)
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.trace_module(source, {"probe": (torch.ones(1),)}).save(str(archive))

    assert detect_format(archive) == "torchscript"
    with pytest.raises(RuntimeError, match="weights_only"):  # why a dedicated reader is needed
        torch.load(archive, weights_only=True)
    raw = read_torchscript_weights(archive)
    assert all(raw[k].dtype == v.dtype and torch.equal(raw[k], v) for k, v in sd.items())

    config = tmp_path / "ViT-tiny.json"
    config.write_text(json.dumps(OPENAI_TINY))  # note: no quick_gelu in the config
    vlm = load(f"{config}@{archive}")
    # what open_clip's load_openai_model builds from an OpenAI archive's state dict after torch.jit.load
    reference = build_model_from_openai_state_dict({**sd}, cast_dtype=None).float()
    assert_same_model(vlm, reference, 32)
    assert vlm.module.transformer.resblocks[0].mlp.gelu.__class__.__name__ == "QuickGELU"


def test_openai_plain_state_dict(load: Any, tmp_path: Path) -> None:
    """OpenAI's state dict saved with torch.save (fp16, with ``input_resolution``): loaded with
    weights_only=True, QuickGELU detected, equal to open_clip's builder for OpenAI state dicts."""
    from open_clip.model import build_model_from_openai_state_dict

    sd = openai_style_state_dict(seed=1)
    path = tmp_path / "ViT-tiny-plain.pt"
    torch.save(sd, path)
    config = tmp_path / "ViT-tiny.json"
    config.write_text(json.dumps(OPENAI_TINY))
    vlm = load(f"{config}@{path}")
    reference = build_model_from_openai_state_dict(dict(sd), cast_dtype=None).float()
    assert_same_model(vlm, reference, 32)


class _Touch:
    """A pickle payload that would create a file if it were ever executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_not_run(load: Any, tiny_dir: Path, tmp_path: Path) -> None:
    from rlcf_bench_models.open_clip_backend import ModelLoadError

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Touch(marker)}, path)
    with pytest.raises(ModelLoadError, match="weights_only=True"):
        load(f"{tiny_dir / 'tiny.json'}@{path}")
    assert not marker.exists()


def test_malicious_torchscript_archive_is_refused_not_run(load: Any, tiny_dir: Path, tmp_path: Path) -> None:
    from rlcf_bench_models.open_clip_backend import ModelLoadError

    marker = tmp_path / "pwned"
    path = tmp_path / "evil_ts.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(_Touch(marker), protocol=2))
        zf.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        zf.writestr("evil/code/__torch__/x.py", "def f(): pass\n")
    with pytest.raises(ModelLoadError, match="refused global"):
        load(f"{tiny_dir / 'tiny.json'}@{path}")
    assert not marker.exists()


def test_weights_that_do_not_fit_fail_clearly(load: Any, tiny_dir: Path, tmp_path: Path) -> None:
    from rlcf_bench_models.open_clip_backend import ModelLoadError

    config = tmp_path / "other.json"
    config.write_text(json.dumps({**tiny_config(), "embed_dim": 16}))  # projections of another shape
    with pytest.raises(ModelLoadError, match="do not fit the architecture"):
        load(f"{config}@{tiny_dir / 'tiny.safetensors'}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="unknown checkpoint format"):
        load(f"{tiny_dir / 'tiny.json'}@{junk}")


def test_load_open_clip_files_with_own_tokenizer(tiny_clip: Any, tiny_dir: Path) -> None:
    """The in-code entry point for models that bring their own tokenizer (e.g. the micro suite)."""
    from rlcf_bench_models.open_clip_backend import load_open_clip_files

    class Fixed:
        context_length = 16

        def __call__(self, texts: list[str]) -> torch.Tensor:
            return torch.tensor([[49406, 320, 49407] + [0] * 13] * len(texts))

    vlm = load_open_clip_files(tiny_config(), tiny_dir / "tiny.safetensors", name="mine", tokenizer=Fixed())
    assert vlm.name == "mine" and torch.equal(vlm.tokenize(["x"])[0, :3], torch.tensor([49406, 320, 49407]))
    with torch.no_grad():
        torch.testing.assert_close(vlm.encode_text(vlm.tokenize(["x"])), tiny_clip.encode_text(vlm.tokenize(["x"])),
                                   rtol=0, atol=1e-5)
