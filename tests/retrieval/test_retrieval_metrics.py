"""The retrieval task: query stream, ranks under the pessimistic tie rule, recall and intervals."""

from __future__ import annotations

import math

import pytest
import torch

from rlcf_bench import Predictions, RunProtocol, SampleRecord
from rlcf_bench_tasks.retrieval import RetrievalTask, recall_metrics
from rlcf_bench_tasks.retrieval_common import ground_truth_rank, parse_directions, predict_by_direction

NAN = float("nan")


class HandData:
    """3 images; captions c0,c1 → image 0, c2 → image 1, c3,c4 → image 2."""

    name = "hand"
    captions = ("c0", "c1", "c2", "c3", "c4")
    caption_image = (0, 0, 1, 2, 2)

    def __len__(self) -> int:
        return 3

    def image_id(self, i: int) -> str:
        return f"img{i}"

    def load_image(self, i: int) -> torch.Tensor:
        return torch.full((3, 8, 8), 40 * i, dtype=torch.uint8)


# Hand-checked: rank = number of NON-ground-truth candidates scoring >= the best ground truth.
I2T = [
    ([0.5, 0.5, 0.9, 0.1, 0.5], 2),  # GT c0,c1 = 0.5; c2 (0.9) and c4 (0.5, a tie) count → 2
    ([0.2, 0.3, 0.3, 0.3, 0.1], 2),  # GT c2 = 0.3 tied with c1 and c3 → 2
    ([0.0, 0.0, 0.0, 0.7, 0.7], 0),  # both GTs tied at the top: GTs never count against each other
]
T2I = [
    ([0.4, 0.4, 0.1], 1),  # c0: GT img0 tied with img1 → 1
    ([0.9, 0.1, 0.2], 0),
    ([NAN, 0.5, 0.5], 1),  # c2: NaN is -inf; img2 ties with GT img1 → 1
    ([0.3, 0.3, NAN], 2),  # c3: the GT scores NaN → worst rank
    ([0.1, 0.2, 0.3], 0),
]


def hand_task(**protocol):
    return RetrievalTask(HandData(), RunProtocol(n_views=1, **protocol))


def test_ground_truth_rank_tie_rule():
    assert ground_truth_rank(torch.tensor([0.3, 0.3, 0.1]), [0]) == 1
    assert ground_truth_rank(torch.tensor([0.3, 0.3, 0.1]), [0, 1]) == 0
    assert ground_truth_rank(torch.tensor([1.0, 1.0, 1.0, 1.0]), [2]) == 3  # constant scorer: worst rank
    assert ground_truth_rank([0.1, 0.2, 0.9], [2]) == 0
    with pytest.raises(ValueError):
        ground_truth_rank(torch.zeros(3), [])


def test_query_stream_directions_limit_and_order():
    t = hand_task()
    ids = [sid for _, sid in t.samples()]
    assert ids == ["i2t:img0", "i2t:img1", "i2t:img2", "t2i:0", "t2i:1", "t2i:2", "t2i:3", "t2i:4"]
    assert [sid for _, sid in hand_task(limit=2).samples()] == ["i2t:img0", "i2t:img1", "t2i:0", "t2i:1"]
    only = RetrievalTask(HandData(), RunProtocol(n_views=1, params=(("direction", "t2i"),)))
    assert [sid for _, sid in only.samples()] == [f"t2i:{k}" for k in range(5)]
    a, b = hand_task(order="shuffled", seed=3).samples(), hand_task(order="shuffled", seed=3).samples()
    assert a == b and sorted(a) == sorted(t.samples())
    assert all(sid.startswith("i2t:") for _, sid in a[:3])  # shuffled within each direction only
    assert parse_directions("image2text") == ("i2t",)
    with pytest.raises(ValueError):
        parse_directions("sideways")


def score_rows(task, rows, direction):
    items = [it for it in task.samples() if it[1].startswith(direction)]
    batch = task.make_batch(items, model=_FakeModel(), device="cpu")
    return task.score(batch, Predictions(scores=torch.tensor(rows)))


class _FakeModel:
    image_size, mean, std = 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_hand_checked_ranks_records_and_recall():
    task = hand_task()
    task.context_fields(_FakeModel(), "cpu")
    recs = score_rows(task, [r for r, _ in I2T], "i2t") + score_rows(task, [r for r, _ in T2I], "t2i")
    assert [r.prediction for r in recs] == [rank for _, rank in I2T + T2I]
    assert [r.score for r in recs] == [float(rank == 0) for _, rank in I2T + T2I]
    assert recs[0].target == [0, 1] and recs[2].target == [3, 4] and recs[3].target == 0 and recs[5].target == 1
    assert recs[0].extra == {"direction": "i2t", "rank": 2, "top1": 2}
    m = recall_metrics(recs)
    assert m["i2t_r1"].value == pytest.approx(100 / 3) and m["i2t_r5"].value == 100.0 and m["i2t_r1"].n == 3
    assert m["t2i_r1"].value == pytest.approx(40.0) and m["t2i_r5"].value == 100.0 and m["t2i_r10"].n == 5
    assert m["t2i_r1"].ci_low <= 40.0 <= m["t2i_r1"].ci_high


def test_recall_at_k_and_the_summary_metrics():
    def rec(d, rank):
        return SampleRecord(f"{d}:{rank}", 0, rank, 0, float(rank < 1), {"direction": d, "rank": rank})

    ranks = [0, 3, 4, 5, 9, 10, 12]
    only = recall_metrics([rec("t2i", r) for r in ranks])
    assert [only[f"t2i_r{k}"].value for k in (1, 5, 10)] == pytest.approx([100 / 7, 300 / 7, 500 / 7])
    assert only["t2i_mean"].value == pytest.approx(300 / 7)
    assert only["r_mean"].value == pytest.approx(300 / 7) and "rsum" not in only and "i2t_r1" not in only
    both = recall_metrics([rec("t2i", r) for r in ranks] + [rec("i2t", r) for r in (0, 0, 7, 20)])
    i2t_mean = (50 + 50 + 75) / 3
    assert both["i2t_mean"].value == pytest.approx(i2t_mean)
    assert both["r_mean"].value == pytest.approx((i2t_mean + 300 / 7) / 2)
    assert both["rsum"].value == pytest.approx(50 + 50 + 75 + 100 / 7 + 300 / 7 + 500 / 7)
    for m in both.values():
        assert m.ci_low <= m.value + 1e-9 and m.value <= m.ci_high + 1e-9 and not math.isnan(m.ci_low)
    assert recall_metrics([rec("t2i", r) for r in ranks]) == only  # deterministic intervals


def test_a_step_straddling_the_directions_is_cut_into_one_batch_per_direction():
    task = hand_task()
    task.context_fields(_FakeModel(), "cpu")
    items = task.samples()[1:5]  # i2t:img1, i2t:img2, t2i:0, t2i:1
    assert task.batches(items) == [items[:2], items[2:]]  # stream order kept
    with pytest.raises(ValueError, match="one direction"):
        task.make_batch(items, model=_FakeModel(), device="cpu")
    i2t, t2i = (task.make_batch(part, model=_FakeModel(), device="cpu") for part in task.batches(items))
    assert i2t.images.shape == (2, 3, 8, 8) and t2i.texts == ("c0", "c1") and t2i.images is None
    rows = {"i2t": [I2T[1][0], I2T[2][0]], "t2i": [T2I[0][0], T2I[1][0]]}
    ranks = [r.prediction for b in (i2t, t2i)
             for r in task.score(b, predict_by_direction(b, lambda d, sub: torch.tensor(rows[d])))]
    assert ranks == [2, 0, 1, 0]
    with pytest.raises(ValueError, match="columns"):
        task.score(i2t, Predictions(scores=torch.zeros(2, 3)))  # 3 columns, 5 captions
