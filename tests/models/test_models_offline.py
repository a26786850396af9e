"""Loading never hangs without network: missing weights, tags, tokenizers and folders fail at once,
with a message that says which file to put where — with and without ``HF_HUB_OFFLINE``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from models_helpers import tiny_config

FAST_S = 5.0


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Empty Hugging Face and open_clip URL caches, so the tests do not depend on this machine's."""
    from huggingface_hub import constants

    from rlcf_bench_models import open_clip_backend

    hf_cache, url_cache = tmp_path / "hf-hub", tmp_path / "clip"
    hf_cache.mkdir()
    url_cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(open_clip_backend, "OPEN_CLIP_URL_CACHE", url_cache)
    return hf_cache, url_cache


@pytest.fixture(params=["HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE unset"])
def hub_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    from huggingface_hub import constants

    if request.param == "HF_HUB_OFFLINE unset":
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return str(request.param)


def _fails_fast(load: Any, name: str, *fragments: str) -> str:
    from rlcf_bench_models.open_clip_backend import ModelLoadError

    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        load(name)
    elapsed = time.perf_counter() - start
    assert elapsed < FAST_S, f"{name} took {elapsed:.1f} s to fail"
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


@pytest.mark.parametrize(("name", "fragments"), [
    ("ViT-B-16@openai", ("open_clip_model.safetensors", "timm/vit_base_patch16_clip_224.openai", "ViT-B-16.pt",
                         "ViT-B-16@openai@/path/to/ViT-B-16.pt", "RLCF_BENCH_ALLOW_DOWNLOAD=1")),
    ("ViT-L-14@openai", ("timm/vit_large_patch14_clip_224.openai", "ViT-L-14.pt")),
    ("ViT-B-16-SigLIP@webli", ("timm/ViT-B-16-SigLIP", "open_clip_model.safetensors")),
    ("EVA02-B-16@merged2b_s8b_b131k", ("timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k",)),
])
def test_missing_tag_fails_fast_with_instructions(load: Any, empty_caches: Any, hub_env: str, name: str,
                                                  fragments: tuple[str, ...]) -> None:
    message = _fails_fast(load, name, *fragments)
    assert "not on this machine" in message


def test_bad_names_fail_fast(load: Any, tmp_path: Path, empty_caches: Any) -> None:
    _fails_fast(load, "ViT-B-61@openai", "no architecture 'ViT-B-61'", "ViT-B-16")
    _fails_fast(load, "ViT-B-16@not-a-tag", "neither an existing file nor a pretrained tag", "openai")
    _fails_fast(load, f"ViT-B-16@{tmp_path / 'absent.safetensors'}", "no file at", "absent.safetensors")
    _fails_fast(load, f"ViT-B-16@openai@{tmp_path / 'absent.pt'}", "no file at", "ViT-B-16@openai")
    _fails_fast(load, f"{tmp_path / 'absent.json'}@{tmp_path}", "no model config at")
    _fails_fast(load, f"ViT-B-16@{tmp_path}", "is a folder")


def test_missing_hf_tokenizer_fails_fast(load: Any, tiny_dir: Path, tmp_path: Path, empty_caches: Any,
                                         hub_env: str) -> None:
    """SigLIP-style configs name a Hugging Face tokenizer: without its files, fail at once."""
    cfg = tiny_config()
    cfg["text_cfg"]["hf_tokenizer_name"] = "timm/ViT-B-16-SigLIP"
    config = tmp_path / "siglip-like.json"
    config.write_text(json.dumps(cfg))
    _fails_fast(load, f"{config}@{tiny_dir / 'tiny.safetensors'}", "timm/ViT-B-16-SigLIP", "tokenizer.json",
                "beside the weights")


def test_hf_folder_problems_fail_fast(load: Any, tmp_path: Path) -> None:
    _fails_fast(load, f"hf:{tmp_path / 'absent'}", "no folder at", "config.json", "model.safetensors")
    folder = tmp_path / "clip"
    folder.mkdir()
    _fails_fast(load, f"hf:{folder}", "config.json is missing")
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))
    _fails_fast(load, f"hf:{folder}", "no weights", "model.safetensors")
    (folder / "model.safetensors").write_bytes(b"")
    _fails_fast(load, f"hf:{folder}", "no tokenizer", "vocab.json", "merges.txt")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "config.json").write_text(json.dumps({"model_type": "siglip2"}))  # SigLIP 2 goes through open_clip
    _fails_fast(load, f"hf:{folder}", "model_type 'siglip2'", "SigLIP2")


def _fake_hf_cache_file(cache: Path, repo: str, filename: str) -> Path:
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0123abcd")
    (snapshot / filename).write_bytes(b"placeholder")
    return snapshot / filename


def test_tags_resolve_from_local_caches_with_their_preprocessing(empty_caches: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    """Tag weights are found in the HF cache (preferred) or open_clip's URL cache, without any
    network call; QuickGELU and preprocessing come from the tag."""
    from rlcf_bench_models.open_clip_backend import resolve

    hf_cache, url_cache = empty_caches
    (url_cache / "ViT-B-16.pt").write_bytes(b"placeholder")
    res = resolve("ViT-B-16@openai")
    assert res.weights == url_cache / "ViT-B-16.pt"
    assert res.model_cfg["quick_gelu"] is True
    assert res.preprocess["interpolation"] == "bicubic" and res.preprocess["mean"][0] == pytest.approx(0.4815, abs=1e-4)

    cached = _fake_hf_cache_file(hf_cache, "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors")
    assert resolve("ViT-B-16@openai").weights == cached

    siglip = _fake_hf_cache_file(hf_cache, "timm/ViT-B-16-SigLIP", "open_clip_model.safetensors")
    res = resolve("ViT-B-16-SigLIP@webli")
    assert res.weights == siglip
    assert tuple(res.preprocess["mean"]) == (0.5, 0.5, 0.5) and res.preprocess["resize_mode"] == "squash"
    assert "quick_gelu" not in res.model_cfg

    # ARCH@TAG@/path: the file is used, with the tag's QuickGELU and preprocessing
    own = tmp_path / "my-copy.pt"
    own.write_bytes(b"placeholder")
    res = resolve(f"ViT-L-14@openai@{own}")
    assert res.weights == own and res.model_cfg["quick_gelu"] is True and res.tag_cfg

    # a bare file of a built-in architecture gets the preprocessing all of its tags share
    res = resolve(f"ViT-B-16-SigLIP@{own}")
    assert tuple(res.preprocess["mean"]) == (0.5, 0.5, 0.5) and res.preprocess["resize_mode"] == "squash"


def test_hub_offline_guard_patches_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from rlcf_bench_models.open_clip_backend import hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hub_offline():
        assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ
    monkeypatch.setenv("RLCF_BENCH_ALLOW_DOWNLOAD", "1")
    with hub_offline():
        assert constants.HF_HUB_OFFLINE is False


def test_names_route_to_their_backend(models_registry: Any) -> None:
    assert models_registry.get("ViT-B-16@openai").name == "open_clip"
    assert models_registry.get("/cfg/x.json@/w/x.safetensors").name == "open_clip"
    assert models_registry.get("hf:/models/clip").name == "hf-clip"
    assert models_registry.get("hf:/models/clip@v2").name == "hf-clip"


SCRIPT = r"""
import sys, time
import open_clip, huggingface_hub  # imports are not what is timed
from rlcf_bench.plugins import PluginHost
import rlcf_bench_models.open_clip_backend
reg = PluginHost(autoload=True).registry("models")
for name in sys.argv[1:]:
    start = time.perf_counter()
    try:
        reg.get(name).load(name, "cpu")
    except Exception as exc:
        print(f"{type(exc).__name__} {time.perf_counter() - start:.2f} {name}", flush=True)
    else:
        print(f"LOADED {time.perf_counter() - start:.2f} {name}", flush=True)
"""


def test_fresh_process_without_offline_env_fails_fast(tmp_path: Path, tiny_dir: Path) -> None:
    """No HF_HUB_OFFLINE anywhere and empty caches: the backend itself keeps the hub out."""
    cfg = tiny_config()
    cfg["text_cfg"]["hf_tokenizer_name"] = "timm/ViT-B-16-SigLIP"
    config = tmp_path / "siglip-like.json"
    config.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items()
           if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "RLCF_BENCH_ALLOW_DOWNLOAD", "HF_HUB_CACHE"}}
    env.update(HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf"))
    names = ["ViT-B-16@openai", "ViT-B-16-SigLIP@webli", f"{config}@{tiny_dir / 'tiny.safetensors'}"]
    out = subprocess.run([sys.executable, "-c", SCRIPT, *names], env=env, capture_output=True, text=True, timeout=120)
    lines = [line.split(" ", 2) for line in out.stdout.splitlines()]
    assert len(lines) == len(names), out.stdout + out.stderr
    for kind, seconds, name in lines:
        assert kind == "ModelLoadError", (name, kind)
        assert float(seconds) < FAST_S, (name, seconds)
