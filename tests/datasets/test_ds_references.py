"""Paper-reported numbers (``docs/paper-numbers.md``) as reference rows."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from rlcf_bench import ReferenceResult
from rlcf_bench_rlcf import paper_numbers as refs


@pytest.fixture(scope="module")
def rows() -> list[ReferenceResult]:
    """The rows as registered (the RLCF plugin owns its paper's numbers, as every method does)."""
    from rlcf_bench.plugins import PluginHost

    return PluginHost(autoload=False, extra=["rlcf_bench_rlcf.paper_numbers"]).references()


def find(rows: list[ReferenceResult], **where: Any) -> list[ReferenceResult]:
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


def test_counts_and_units(rows: list[ReferenceResult]) -> None:
    by_task = Counter(r.task for r in rows)
    # KD and ATKD (Table 1) are registered by their own method files (baselines/rlcf_bench_baselines/kd.py, atkd.py).
    assert by_task == {"classification": 15 * 5, "retrieval": 9 * 12, "captioning": 3 + 6 + 6 * 13}
    assert all(0 <= r.value <= 100 for r in rows)
    assert all("percent" in r.note for r in rows)
    assert all(r.source.startswith("RLCF (ICLR 2024)") and "mzhaoshuai/RLCF gh-pages assets/exp-" in r.source for r in rows)


def test_rows_are_unique_under_the_store_key(rows: list[ReferenceResult]) -> None:
    keys = Counter((r.task, r.dataset, r.method, r.model, r.reward_model or "", r.metric, r.source) for r in rows)
    assert max(keys.values()) == 1


def test_names_match_registered_datasets_and_metrics(rows: list[ReferenceResult], host: Any) -> None:
    datasets = set(host.registry("datasets").names())
    assert {r.dataset for r in rows} <= datasets
    assert {r.metric for r in find(rows, task="classification")} == {"top1"}
    assert {r.metric for r in find(rows, task="retrieval")} == {f"{d}_r{k}" for d in ("t2i", "i2t") for k in (1, 5, 10)}
    assert {r.metric for r in find(rows, task="captioning")} == {"bleu4", "cider", "spice", "refclipscore"}


def test_spot_values(rows: list[ReferenceResult]) -> None:
    (zs,) = find(rows, dataset="imagenet-a", method="zero-shot", model="ViT-B-16@openai")
    assert zs.value == 47.87 and zs.reward_model is None
    plain = find(rows, dataset="imagenet-a", method="rlcf-prompt", reward_model="ViT-L-14@openai")
    assert sorted((r.value, "CoOp init" in r.note) for r in plain) == [(65.45, False), (69.74, True)]
    (s_coop,) = find(rows, dataset="imagenet-a", method="rlcf-prompt", reward_model="rlcf-s")
    assert s_coop.value == 71.11 and "CoOp init" in s_coop.note
    tune = find(rows, dataset="imagenet-r", method="rlcf-image", reward_model="rlcf-s")
    assert sorted(r.value for r in tune) == [86.97, 87.23]
    (tpt_img,) = find(rows, dataset="imagenet-v2", method="tpt-image")
    assert tpt_img.value == 63.70
    (l14,) = find(rows, dataset="imagenet-sketch", method="zero-shot", model="ViT-L-14@openai")
    assert l14.value == 57.84
    (ret,) = find(rows, dataset="flickr30k-retrieval", method="rlcf", reward_model="ViT-L-14@openai", metric="i2t_r1")
    assert ret.value == 87.3
    (cap,) = find(rows, dataset="nocaps-out", method="rlcf", model="clipcap-coco", reward_model="ViT-L-14@openai",
                  metric="cider")
    assert cap.value == 63.8
    assert find(rows, method="magic", dataset="nocaps-in") == []  # not reported: no row


def test_table_shapes() -> None:
    for _, _, _, _, _, values in refs.CLASSIFICATION:
        assert len(values) == len(refs.CLASSIFICATION_DATASETS)
    for _, _, _, _, _, values in refs.RETRIEVAL:
        assert len(values) == len(refs.RETRIEVAL_COLUMNS)
    for _, _, _, _, _, values in refs.CAPTIONING:
        assert len(values) == len(refs.CAPTIONING_COLUMNS)
