"""The micro model zoo: tokenizer, the shipped weights, and the training command."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rlcf_bench_micro import commands, zoo
from rlcf_bench_micro import generator as gen

torch.set_num_threads(2)

# What the zoo must be (issue: a reward model that mirrors the paper's ViT-L/14-vs-B/16 gap),
# measured on validation splits, never on the test sets.
STUDENT_MIN_IN_DOMAIN = 0.80
REWARD_MIN_SHIFTED_GAIN = 0.08
REWARD_MAX_IN_DOMAIN_LOSS = 0.03


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
    from rlcf_bench.tta.vlm import OpenClipVLM

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


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_shipped_weights_match_the_manifest(name):
    entry = zoo.read_manifest()["models"][name]
    path = zoo.WEIGHTS_DIR / entry["file"]
    assert zoo.sha256_file(path) == entry["sha256"]
    assert path.stat().st_size == entry["size_bytes"] < 30 * 2**20 and not entry["quick"]
    vlm = zoo.load_zoo_model(name, "cpu")
    assert vlm.image_size == 64 and vlm.context_length == zoo.CONTEXT_LENGTH
    assert abs(vlm.logit_scale - 100.0) < 1e-3
    assert sum(p.numel() for p in vlm.model.parameters()) == entry["n_parameters"]


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
@pytest.mark.parametrize("domain", ["photo", "rendition"])
def test_validation_accuracy_is_what_the_manifest_records(name, domain):
    """Re-measured on the validation split the manifest names (at most one image may flip: another
    CPU rounds differently)."""
    from rlcf_bench_micro._train import validate_domains

    entry = zoo.read_manifest()["models"][name]
    n, seed = entry["val_split"]["n"], entry["val_split"]["seed"]
    measured = validate_domains(zoo.load_zoo_model(name, "cpu"), n, seed, (domain,))[domain]
    assert abs(measured - entry["val_accuracy_by_domain"][domain]) <= 1.0 / n + 1e-9


def test_the_reward_model_is_larger_broader_and_not_derived_from_the_student():
    from rlcf_bench_micro._train import SHIFTED_DOMAINS, TRAIN_CONFIGS, TrainConfig

    models = zoo.read_manifest()["models"]
    student, reward = models["micro-student"], models["micro-reward"]
    assert reward["n_parameters"] >= 2 * student["n_parameters"]
    assert "init_from" not in reward and "init_from" not in {f for f in TrainConfig.__dataclass_fields__}
    # Not the student's architecture, so it cannot have started from the student's weights.
    assert reward["config"] != student["config"]
    assert {d for d, _ in TRAIN_CONFIGS["micro-reward"].pool} > {d for d, _ in TRAIN_CONFIGS["micro-student"].pool}
    for entry in (student, reward):  # the recorded mean is the mean of the recorded domains
        mean = sum(entry["val_accuracy_by_domain"][d] for d in SHIFTED_DOMAINS) / len(SHIFTED_DOMAINS)
        assert abs(entry["val_shifted_mean"] - mean) < 1e-4


def test_the_zoo_mirrors_the_papers_policy_reward_gap():
    models = zoo.read_manifest()["models"]
    student, reward = models["micro-student"], models["micro-reward"]
    s_photo, r_photo = (m["val_accuracy_by_domain"]["photo"] for m in (student, reward))
    assert s_photo >= STUDENT_MIN_IN_DOMAIN
    assert reward["val_shifted_mean"] >= student["val_shifted_mean"] + REWARD_MIN_SHIFTED_GAIN
    assert r_photo >= s_photo - REWARD_MAX_IN_DOMAIN_LOSS


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

    commands.rlcfb_add_commands(cli)
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


def test_training_is_reproducible():
    from rlcf_bench_micro._train import QUICK, TrainConfig, train_model

    cfg = TrainConfig(**{**QUICK, "steps": 1, "batch_size": 8, "pool": (("photo", 8), ("broad", 8)),
                         "val_size": 10, "augment_prob": 1.0})
    a, _ = train_model("micro-student", cfg, seed=3, log=lambda s: None, val_domains=("photo",))
    b, _ = train_model("micro-student", cfg, seed=3, log=lambda s: None, val_domains=("photo",))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_augmentation_ramps_in_over_the_declared_share_of_steps():
    from rlcf_bench_micro._train import TrainConfig, _augment_share

    cfg = TrainConfig(steps=100, augment_prob=0.5, augment_ramp=0.2)
    assert [_augment_share(s, cfg) for s in (0, 10, 20, 99)] == [0.0, 0.25, 0.5, 0.5]
    assert _augment_share(50, TrainConfig(steps=100)) == 0.0


@pytest.mark.slow
def test_parallel_training_writes_the_same_bytes_as_sequential(tmp_path):
    """``--jobs 2`` trains the models in two processes; the checkpoints are byte-identical."""
    from rlcf_bench_micro._train import train_zoo

    quiet = lambda s: None  # noqa: E731
    seq = train_zoo(tmp_path / "seq", quick=True, threads=1, jobs=1, log=quiet)
    par = train_zoo(tmp_path / "par", quick=True, threads=1, jobs=2, log=quiet)
    for name in zoo.ZOO_NAMES:
        assert seq["models"][name]["sha256"] == par["models"][name]["sha256"]
