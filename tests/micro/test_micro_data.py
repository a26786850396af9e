"""The micro datasets: registered through the hook, implement the host's data protocols."""

from __future__ import annotations

import pytest
import torch

from rlcf_bench.datasets import CaptioningData, ClassificationData, RetrievalData
from rlcf_bench.plugins import PluginHost


@pytest.fixture(scope="module")
def specs():
    host = PluginHost(autoload=False, extra=["rlcf_bench_micro"])
    found = {}
    for spec_list in host.pm.hook.rlcfb_register_datasets():
        for spec in spec_list:
            found[spec.name] = spec
    return found


def test_every_domain_is_registered(specs):
    expected = {f"micro-{d}" for d in ("photo", "sketch", "rendition", "hard", "resampled",
                                        "noise", "blur", "contrast", "pixelate")}
    assert expected <= set(specs)
    for name in expected:
        spec = specs[name]
        assert spec.task_kinds == frozenset({"classification", "retrieval", "captioning"})
        assert spec.root_name is None and spec.version and spec.description
        assert spec.params["n"] == 500
    assert specs["micro-noise"].params["severity"] == 3
    assert "severity" not in specs["micro-sketch"].params


def test_dataset_objects_follow_the_protocols(specs):
    ds = specs["micro-sketch"].build(None, n=12)
    assert isinstance(ds, ClassificationData)
    assert isinstance(ds, RetrievalData)
    assert isinstance(ds, CaptioningData)
    assert len(ds) == 12 and ds.templates == ("a photo of a {}.",) and len(ds.classnames) == 10
    img = ds.load_image(3)
    assert img.dtype == torch.uint8 and img.shape == (3, 64, 64)
    assert 0 <= ds.label(3) < 10
    assert ds.sample_id(3) != ds.sample_id(4)
    refs = ds.references(3)
    assert len(refs) == 4 and all(r.endswith(".") for r in refs)
    assert len(ds.captions) == 4 * 12 and len(ds.caption_image) == len(ds.captions)
    assert ds.captions[4 * 3] == refs[0] and ds.caption_image[4 * 3] == 3
    with pytest.raises(IndexError):
        ds.load_image(12)


def test_params_seed_and_severity(specs):
    a = specs["micro-noise"].build(root="/ignored", n=4, severity=1)
    b = specs["micro-noise"].build(n=4, severity=5)
    c = specs["micro-photo"].build(n=4)
    assert a.name == "micro-noise-1" and b.name == "micro-noise-5"
    assert [a.label(i) for i in range(4)] == [c.label(i) for i in range(4)]  # corrupted photo scenes
    assert not torch.equal(a.images, b.images)
    assert torch.equal(specs["micro-hard"].build(n=4, seed=0).images, specs["micro-hard"].build(n=4, seed=0).images)
    assert not torch.equal(specs["micro-hard"].build(n=4, seed=0).images, specs["micro-hard"].build(n=4, seed=1).images)
    with pytest.raises(ValueError):
        specs["micro-blur"].build(n=4, severity=6)


def test_a_process_renders_a_domain_once_and_every_dataset_gets_its_own_copy(specs, monkeypatch):
    """The runs of a suite build a new dataset each; the rendering is kept per process."""
    from rlcf_bench_micro import data, generator

    data._generated.cache_clear()
    calls = []
    real = generator.generate

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(generator, "generate", counting)
    first = specs["micro-sketch"].build(None, n=3)
    img = first.load_image(1).clone()
    first.load_image(1).zero_()  # a run that writes into its images does not reach the next one
    second = specs["micro-sketch"].build(None, n=3)
    assert torch.equal(second.load_image(1), img) and second.label(1) == first.label(1)
    assert torch.equal(second.load_image(2), torch.from_numpy(real("sketch", 3).images[2]).permute(2, 0, 1))
    assert len(calls) == 1
    specs["micro-sketch"].build(None, n=4).load_image(0)  # another size is another set
    assert len(calls) == 2
    data._generated.cache_clear()
