"""The open-set task (docs/open-set.md): AUROC/FPR95 against independent brute-force numpy
computations, DeLong against its definition, the seeded mix, OOD scores and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlcf_bench import Predictions
from rlcf_bench_tasks._openset_stats import (
    auroc,
    bootstrap_intervals,
    delong_paired,
    delong_variance,
    fpr_at_tpr,
)
from rlcf_bench_tasks.openset import ood_scores
from rlcf_bench_tasks.openset_mix import OpenSetMix, parse_ood_names


def _brute_auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _brute_fpr95(pos: np.ndarray, neg: np.ndarray) -> float:
    """Scan every threshold from high to low; the first one reaching TPR >= 0.95 (roc_curve's rule)."""
    for t in sorted(np.concatenate([pos, neg]), reverse=True):
        if (pos >= t).mean() >= 0.95:
            return float((neg >= t).mean())
    raise AssertionError("unreachable")


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    pos = np.round(rng.normal(1.0, 1.0, 137), 1)  # rounded: ties on purpose
    neg = np.round(rng.normal(0.0, 1.0, 91), 1)
    return pos, neg


def _flat(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([pos, neg]), np.r_[np.zeros(pos.size, bool), np.ones(neg.size, bool)]


def test_auroc_and_fpr95_match_brute_force(scores):
    pos, neg = scores
    s, flags = _flat(pos, neg)
    assert auroc(s, flags) == pytest.approx(_brute_auroc(pos, neg), abs=1e-12)
    assert fpr_at_tpr(s, flags) == pytest.approx(_brute_fpr95(pos, neg), abs=1e-12)
    # perfect separation and its reverse
    assert auroc([3, 4, 1, 2], [False, False, True, True]) == 1.0
    assert auroc([1, 2, 3, 4], [False, False, True, True]) == 0.0
    assert fpr_at_tpr([3, 4, 1, 2], [False, False, True, True]) == 0.0
    assert math.isnan(auroc([1, 2], [False, False]))


def test_delong_variance_matches_the_pairwise_definition(scores):
    pos, neg = scores
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    expected = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    auc, var = delong_variance(*_flat(pos, neg))
    assert auc == pytest.approx(psi.mean())
    assert var == pytest.approx(expected, rel=1e-10)


def test_delong_paired_against_definition_and_bootstrap(scores):
    pos, neg = scores
    rng = np.random.default_rng(5)
    s_a, flags = _flat(pos, neg)
    s_b = s_a + rng.normal(0, 0.8, s_a.size)
    t = delong_paired(s_a, s_b, flags)
    pa, na, pb, nb = s_a[~flags], s_a[flags], s_b[~flags], s_b[flags]
    comps = []
    for p, q in ((pa, na), (pb, nb)):
        psi = (p[:, None] > q[None, :]) + 0.5 * (p[:, None] == q[None, :])
        comps.append((psi.mean(axis=1), psi.mean(axis=0)))
    cov = np.cov([comps[0][0], comps[1][0]]) / pos.size + np.cov([comps[0][1], comps[1][1]]) / neg.size
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert t.diff == pytest.approx(_brute_auroc(pa, na) - _brute_auroc(pb, nb))
    assert t.se == pytest.approx(se, rel=1e-10)
    from scipy.stats import norm

    assert t.p_value == pytest.approx(2 * norm.sf(abs(t.diff) / se))
    # the paired bootstrap of the difference agrees with DeLong's standard error within 20 %
    boots = []
    for _ in range(400):
        i, j = rng.integers(0, pa.size, pa.size), rng.integers(0, na.size, na.size)
        boots.append(_brute_auroc(pa[i], na[j]) - _brute_auroc(pb[i], nb[j]))
    assert np.std(boots) == pytest.approx(se, rel=0.2)
    # identical scores: no difference, p = 1
    same = delong_paired(s_a, s_a, flags)
    assert same.diff == 0.0 and same.p_value == 1.0


def test_bootstrap_intervals_cover_the_estimate(scores):
    s, flags = _flat(*scores)
    ci = bootstrap_intervals(s, flags, n_resamples=300)
    assert ci["auroc"][0] <= auroc(s, flags) <= ci["auroc"][1]
    assert ci["fpr95"][0] <= fpr_at_tpr(s, flags) <= ci["fpr95"][1]
    assert ci["auroc"][1] - ci["auroc"][0] > 0.01


class _Toy:
    def __init__(self, n: int, tag: str, label: int = 0) -> None:
        self.n, self.tag, self.lab = n, tag, label
        self.classnames, self.templates = ("a", "b"), ("{}",)

    def __len__(self) -> int:
        return self.n

    def sample_id(self, i: int) -> str:
        return f"{self.tag}{i}"

    def label(self, i: int) -> int:
        return self.lab

    def load_image(self, i: int) -> torch.Tensor:
        return torch.zeros(3, 4, 4, dtype=torch.uint8)


def test_mix_draws_the_stated_ratio_seeded_and_split_over_ood_sets():
    mix = OpenSetMix(_Toy(30, "x", 1), [("p", _Toy(100, "p")), ("q", _Toy(100, "q"))], ood_ratio=0.25, mix_seed=2)
    ids = [mix.sample_id(i) for i in range(len(mix))]
    assert len(mix) == 40 and mix.n_ood == 10
    assert sum(s.startswith("ood:p:") for s in ids) == 5 and sum(s.startswith("ood:q:") for s in ids) == 5
    assert sum(s.startswith("id:") for s in ids) == 30 and len(set(ids)) == 40
    assert all(mix.label(i) == (-1 if mix.is_ood(i) else 1) for i in range(len(mix)))
    again = OpenSetMix(_Toy(30, "x", 1), [("p", _Toy(100, "p")), ("q", _Toy(100, "q"))], ood_ratio=0.25, mix_seed=2)
    assert [again.sample_id(i) for i in range(len(again))] == ids
    other = OpenSetMix(_Toy(30, "x", 1), [("p", _Toy(100, "p")), ("q", _Toy(100, "q"))], ood_ratio=0.25, mix_seed=3)
    assert [other.sample_id(i) for i in range(len(other))] != ids
    assert ids[:30] != sorted(ids[:30]) or any(s.startswith("ood") for s in ids[:30])  # interleaved


def test_mix_bad_input_one_line_errors():
    with pytest.raises(ValueError, match="ood_ratio"):
        OpenSetMix(_Toy(3, "x"), [("p", _Toy(3, "p"))], ood_ratio=1.0)
    small = OpenSetMix(_Toy(30, "x"), [("p", _Toy(5, "p"))], ood_ratio=0.5)
    with pytest.raises(ValueError, match="OOD set 'p' has 5 images, the mix needs 30"):
        len(small)
    with pytest.raises(ValueError, match="ood must be"):
        parse_ood_names("ninco,nope", ("ninco", "textures"))


def test_ood_scores_msp_energy_and_a_methods_own():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    msp = ood_scores(Predictions(logits=logits), "msp")
    assert msp == pytest.approx([1 / (1 + math.exp(-2)), 0.5])
    energy = ood_scores(Predictions(logits=logits), "energy")
    assert energy == pytest.approx([math.log(math.exp(2) + 1), math.log(2)])
    own = ood_scores(Predictions(logits=logits, extras=[{"ood_score": 7.0}, {"ood_score": -1.0}]), "msp")
    assert own == [7.0, -1.0]
    with pytest.raises(ValueError, match="energy needs logits"):
        ood_scores(Predictions(probs=torch.tensor([[0.5, 0.5]])), "energy")


def test_the_stream_curve_counts_only_scored_samples():
    from rlcf_bench import SampleRecord
    from rlcf_bench.online_protocol import stream_metric_name, stream_metrics

    items = [(i, f"s{i}") for i in range(4)]
    records = [SampleRecord("s0", 0, 1, 1, 1.0), SampleRecord("s1", 1, 0, -1, None),  # s1: an OOD sample
               SampleRecord("s2", 2, 0, 1, 0.0), SampleRecord("s3", 3, 1, 1, 1.0)]
    full = stream_metrics(items, records)[stream_metric_name(100)]
    assert full.n == 3 and full.value == pytest.approx(200 / 3)
