"""Registration, cheap imports and an end-to-end Runner run of the captioning task."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlcf_bench.runner import RunRequest

NO_METEOR = (("meteor", False),)


def test_components_are_registered(caption_host):
    assert caption_host.registry("tasks").get("captioning").kind == "captioning"
    methods = caption_host.registry("methods")
    assert methods.tasks_of("rlcf") == frozenset({"captioning", "retrieval"})
    assert "reward_model" in methods.get("rlcf", "captioning").requires
    assert "captioning" in methods.tasks_of("zero-shot")
    models = caption_host.registry("models")
    assert models.get("clipcap@/some/dir").kind == "captioner"  # not claimed by the open_clip backend
    assert models.get("capdec@/some/dir").name == "capdec"
    assert models.get("tiny-captioner").kind == "captioner"


def test_plugin_modules_do_not_import_torch():
    code = ("import sys, rlcf_bench_tasks.captioning, rlcf_bench_models.clipcap_commands, "
            "rlcf_bench_models.prefix_captioners, rlcf_bench_rlcf._captioning, rlcf_bench_rlcf.rlcf, rlcf_bench_baselines._zero_shot_caption, rlcf_bench_baselines.zero_shot, "
            "rlcf_bench_micro.captioner; "
            "rlcf_bench_micro.captioner.rlcfb_register_models(); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runner_stores_captions_per_sample_and_aggregates(caption_runner, store):
    for method, reward, options in (("zero-shot", None, ()),
                                    ("rlcf", "tiny-clip", (("steps", "1"), ("k", "3")))):
        result = caption_runner.run(RunRequest(task="captioning", dataset="tiny-captioning", method=method,
                                               model="tiny-captioner", reward_model=reward, method_options=options,
                                               protocol_overrides=NO_METEOR))
        assert result.status == "finished" and result.n_samples == 6
        records = store.sample_records(result.run_id)
        assert len(records) == 6
        for rec in records:
            assert isinstance(rec.prediction, str)
            assert rec.target and all(isinstance(t, str) for t in rec.target)
            assert rec.score is not None and rec.extra["clipscore_model"] == "tiny-clip"
        for name in ("bleu1", "bleu4", "rougeL", "cider", "clipscore", "refclipscore"):
            assert name in result.metrics
        assert "meteor" not in result.metrics
        # A run over the whole set: its corpus CIDEr (pycocoevalcap) is the mean of the stored
        # per-image terms (the whole set's idf), which the report's paired bootstrap resamples.
        terms = [rec.extra["cider"] for rec in records]
        assert 100 * sum(terms) / len(terms) == pytest.approx(result.metrics["cider"].value, rel=1e-9, abs=1e-9)


def test_shipped_micro_captioner_captions_in_domain_images():
    import pytest
    import torch

    from rlcf_bench_micro.captioner import CAPTIONER_DIR
    from rlcf_bench_micro.data import MicroDataset

    if not (CAPTIONER_DIR / "captioner.json").is_file():
        pytest.skip("micro-captioner not trained")
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.session import ComponentSession
    from rlcf_bench.tta.views import normalize, resize_center_crop

    session = ComponentSession(PluginHost(autoload=False, extra=["rlcf_bench_micro"]), device="cpu")
    model = session.model("micro-captioner")
    # its CLIP comes from the same session (its plugins, its cache), not from a plugin manager of its own
    assert model.clip is session.model("micro-student")
    data = MicroDataset("photo", n=2)
    x = normalize(torch.stack([resize_center_crop(data.load_image(i), model.image_size) for i in range(2)]),
                  model.mean, model.std)
    captions = model.caption(x)
    shapes = [data.scenes[i].shape for i in range(2)]
    assert all(shape in cap for shape, cap in zip(shapes, captions)), (captions, shapes)
