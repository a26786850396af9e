"""LAME against the official code (fiveai/LAME @ d2e5f63), on fixed probabilities and features.

Golden: the official affinities and ``laplacian_optimization`` per batch, as ``LAME.run_step``
calls them, for the RBF (default), kNN and linear affinities (``tools/parity/record_lame.py``;
inputs ``tests/parity/batch_inputs.py``). Ours: :func:`rlcf_bench_baselines.lame.lame` with the
method's config. Tolerance: 1e-6 on Y (fp32, one thread); identical predictions.
"""

from __future__ import annotations

import pytest
import torch
from batch_inputs import lame_stream

ATOL = 1e-6


@pytest.mark.parametrize("affinity", ["rbf", "knn", "linear"])
def test_lame_labels_are_the_official_ones(affinity, golden):
    from rlcf_bench_baselines.lame import LameConfig, lame

    tensors, meta = golden("lame")
    assert meta["repository"].endswith("fiveai/LAME")
    probs, feats = lame_stream()
    ours = torch.stack([lame(p, f, LameConfig(affinity=affinity)) for p, f in zip(probs, feats)])
    expected = tensors[f"{affinity}_labels"]
    torch.testing.assert_close(ours, expected, rtol=0, atol=ATOL)
    assert torch.equal(ours.argmax(-1), expected.argmax(-1))
    assert bool((expected.argmax(-1) != probs.argmax(-1)).any())  # LAME changed some predictions here


def test_lame_default_is_the_official_default():
    from rlcf_bench_baselines.lame import LameConfig

    config = LameConfig()
    assert (config.affinity, config.knn, config.bound_lambda, config.max_steps, config.force_symmetry) == \
        ("rbf", 5, 1.0, 100, False)
