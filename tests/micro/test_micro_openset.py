"""The micro suite's open-set data and its part of the ``protocols`` suite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcf_bench_micro import generator as gen
from rlcf_bench_micro.ood import MicroOOD, rlcfb_register_datasets
from rlcf_bench_micro.openset_suite import openset_runs


def test_novel_shapes_are_outside_the_label_set_and_drawn():
    assert not set(gen.NOVEL_SHAPES) & set(gen.SHAPES)
    u, v = np.meshgrid(np.linspace(-1, 1, 65), np.linspace(-1, 1, 65))
    known = [gen.shape_mask(s, u, v) for s in gen.SHAPES]
    for shape in gen.NOVEL_SHAPES:
        mask = gen.shape_mask(shape, u, v)
        assert 0.1 < mask.mean() < 0.9, shape
        assert all((mask != k).mean() > 0.03 for k in known), shape  # no novel shape is a known one
    with pytest.raises(ValueError, match="unknown shape"):
        gen.shape_mask("blob", u, v)


def test_micro_ood_is_deterministic_and_the_mix_is_half_ood():
    a, b = MicroOOD(seed=0), MicroOOD(seed=0)
    assert torch.equal(a.load_image(3), b.load_image(3)) and not torch.equal(a.load_image(3), a.load_image(4))
    assert a.load_image(0).shape == (3, 64, 64) and a.load_image(0).dtype == torch.uint8
    (spec,) = rlcfb_register_datasets()
    mix = spec.build(None, n=10)
    assert len(mix) == 20 and mix.n_ood == 10 and len(mix.classnames) == len(gen.SHAPES)
    with pytest.raises(ValueError, match="n must be positive"):
        spec.build(None, n=0)


class _M:
    def __init__(self, name: str, tasks: set[str], requires: frozenset[str] = frozenset()) -> None:
        self.name, self.tasks, self.requires = name, tasks, requires


def test_the_protocols_suite_runs_every_classification_method_on_the_open_set_stream():
    methods = [_M("zero-shot", {"classification", "retrieval"}), _M("tda", {"classification"}),
               _M("rlcf-image", {"classification"}, frozenset({"reward_model"})), _M("cap", {"captioning"})]
    runs = openset_runs(methods)
    assert [(r.method, r.model, r.reward_model) for r in runs] == [
        ("zero-shot", "micro-student", None), ("tda", "micro-student", None),
        ("rlcf-image", "micro-student", "micro-reward"), ("zero-shot", "micro-reward", None)]
    assert {(r.task, r.dataset) for r in runs} == {("open-set", "micro-openset")}
