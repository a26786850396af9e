"""The micro model zoo: tokenizer, the shipped weights, and the training command."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rlcf_bench_micro import generator as gen
from rlcf_bench_micro import zoo

torch.set_num_threads(2)

# Zero-shot accuracy of the shipped weights on the first 200 photo test images
# ("a photo of a {}." prompts), measured when the weights were trained; asserted with margin.
MEASURED_PHOTO_ACCURACY = {"micro-student": 0.695, "micro-reward": 0.635}
MARGIN = 0.05


def test_tokenizer_follows_clip_conventions():
    tok = zoo.default_tokenizer()
    ids = tok(["a photo of a star.", "A Large RED star, above a zebra."])
    assert ids.shape == (2, tok.context_length) and ids.dtype == torch.long
    assert tok.eot_token_id == tok.vocab_size - 1 == int(ids.max())  # highest id: argmax pooling
    assert int(ids[0, 0]) == tok.sot_token_id
    assert int(ids[0].argmax()) == 7  # sot a photo of a star . eot
    assert tok.unk_token_id in ids[1].tolist()  # "zebra"
    assert tok.decode(ids[0]) == "a photo of a star."
    long = tok(["a " * 100])
    assert int(long[0, -1]) == tok.eot_token_id


def test_text_truncation_is_exact_with_the_word_tokenizer():
    from rlcf_bench.vlm import OpenClipVLM

    tok = zoo.default_tokenizer()
    torch.manual_seed(0)
    model = zoo.build_clip(zoo.full_config("micro-student", tok))
    vlm = OpenClipVLM(model, tok, name="t", image_size=64)
    tokens = vlm.tokenize(["a photo of a star.", "a small red star above a blue circle."])
    assert torch.allclose(vlm.encode_text(tokens), vlm.encode_text(tokens, truncate=False), atol=1e-5)
    assert abs(vlm.logit_scale - 100.0) < 1e-3


def test_models_are_registered_with_checksum_versions():
    manifest = zoo.read_manifest()
    specs = {s.name: s for s in zoo.rlcfb_register_models()}
    assert set(specs) == {"micro-student", "micro-reward"}
    for name, spec in specs.items():
        assert spec.version == manifest["models"][name]["sha256"][:12]


@pytest.fixture(scope="module")
def photo_sample():
    return gen.generate("photo", 200, seed=0, split="test")


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_shipped_weights_load_and_reach_the_stated_accuracy(name, photo_sample):
    entry = zoo.read_manifest()["models"][name]
    path = zoo.WEIGHTS_DIR / entry["file"]
    assert zoo.sha256_file(path) == entry["sha256"]
    assert path.stat().st_size < 30 * 2**20 and not entry["quick"]
    vlm = zoo.load_zoo_model(name, "cpu")
    assert vlm.image_size == 64 and vlm.context_length == zoo.CONTEXT_LENGTH
    assert abs(vlm.logit_scale - 100.0) < 1e-3
    acc = zoo.zero_shot_accuracy(vlm, photo_sample.images, photo_sample.labels.tolist())
    assert acc >= MEASURED_PHOTO_ACCURACY[name] - MARGIN, acc


def test_a_corrupted_checkpoint_is_refused(tmp_path):
    for item in zoo.WEIGHTS_DIR.iterdir():
        if item.name.startswith("micro-student") or item.name == zoo.MANIFEST:
            shutil.copy(item, tmp_path / item.name)
    manifest = json.loads((tmp_path / zoo.MANIFEST).read_text())
    manifest["models"]["micro-student"]["sha256"] = "0" * 64
    (tmp_path / zoo.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(zoo.ChecksumError):
        zoo.load_zoo_model("micro-student", "cpu", tmp_path)


def test_train_zoo_command_runs_a_few_steps(tmp_path):
    """The training command never rots: a few tiny steps through the click command, then load."""
    import click
    from click.testing import CliRunner

    @click.group()
    def cli() -> None:
        pass

    zoo.rlcfb_add_commands(cli)
    result = CliRunner().invoke(cli, ["micro", "train-zoo", "--quick", "--out", str(tmp_path),
                                      "--model", "micro-student", "--threads", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / zoo.MANIFEST).read_text())
    entry = manifest["models"]["micro-student"]
    assert entry["quick"] and entry["seed"] == 0 and entry["data_version"] == gen.DATA_VERSION
    assert entry["curves"]["loss"] and entry["curves"]["val_accuracy"]
    assert (tmp_path / "micro-student.safetensors").is_file()
    vlm = zoo.load_zoo_model("micro-student", "cpu", tmp_path)
    feats = vlm.text_features(["a photo of a star."])
    assert feats.shape == (1, 128) and torch.isfinite(feats).all()


def test_training_is_reproducible(tmp_path):
    from rlcf_bench_micro._train import QUICK, TrainConfig, train_model

    cfg = TrainConfig(**{**QUICK, "steps": 1, "batch_size": 8, "pool_size": 16, "val_size": 10})
    a, _ = train_model("micro-student", cfg, seed=3, log=lambda s: None)
    b, _ = train_model("micro-student", cfg, seed=3, log=lambda s: None)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
