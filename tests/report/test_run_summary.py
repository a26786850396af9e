"""The end-of-run summary (issue 28): the default run's 175 runs fit one screen as methods x
datasets matrices ordered by the group's average, the folded stream orders are said in one line,
a row apart says why (the reward model's reference run, another model, another protocol), and
the progress line shows each task's primary metric.

The store is constructed in the default run's shape (the micro suite's declared groups and
comparisons; 21 classification methods + the reward model's zero-shot on 5 domains, 6 online
methods in 3 stream orders, retrieval 3 runs, captioning 2 runs: 175) with 60 samples per domain
instead of 500, so the test is quick; no method is run.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from report_store import add_run, cls_metrics, correct_on

from rlcf_bench.plugins import PluginHost
from rlcf_bench.report.run_summary import render_run_summary
from rlcf_bench.store import Store
from rlcf_bench.types import MetricValue
from rlcf_bench_micro import suite as micro

EPISODIC = ("zero-shot", "tpt-prompt", "rlcf-prompt", "c-tpt", "r-tpt", "tps", "tpt-image", "rlcf-image", "kd", "dkd",
            "atkd", "mta", "zero", "confident-view-ensemble", "ttl")
ONLINE = ("tda", "dmn-zs", "dpe", "boostadapter", "dmn-weak", "onzeta")
REWARDED = {"rlcf-prompt", "rlcf-image", "kd", "dkd", "atkd"}
N = 60
P0 = "p0" + "0" * 14


def _hits(method: str, dataset: str, order: int = 0, quality: float | None = None) -> set[int]:
    rng = random.Random(f"{method}/{dataset}/{order}")
    p = quality if quality is not None else 0.3 + 0.4 * rng.random()
    return {i for i in range(N) if rng.random() < p}


def _cls(store: Store, dataset: str, method: str, hits: set[int], **kw: object) -> int:
    sc = correct_on(N, hits)
    return add_run(store, task="classification", kind="classification", dataset=dataset, method=method, scores=sc,
                   metrics=cls_metrics(sc), **kw)  # type: ignore[arg-type]


def _default_run_store(path: Path) -> tuple[Store, list[int]]:
    store = Store(f"sqlite:///{path}")
    ids: list[int] = []
    student, reward = micro.STUDENT, micro.REWARD
    zero = {"seed": 0, "params": {}}
    for method in EPISODIC + ONLINE:
        for d in micro.CLASSIFICATION_DOMAINS:
            ids.append(_cls(store, d, method, _hits(method, d), model=student, protocol_hash=P0, protocol=zero,
                            reward_model=reward if method in REWARDED else None))
    for method in ONLINE:  # stream orders 1 and 2: another protocol hash each, folded into order 0's row
        for order in (1, 2):
            for d in micro.CLASSIFICATION_DOMAINS:
                ids.append(_cls(store, d, method, _hits(method, d, order), model=student,
                                protocol_hash=f"p{order}" + "0" * 14,
                                protocol={"seed": 0, "params": {"order_seed": order}}))
    for d in micro.CLASSIFICATION_DOMAINS:
        ids.append(_cls(store, d, "zero-shot", _hits("rm", d, quality=0.9), model=reward, protocol_hash=P0,
                        protocol=zero))
    ret = {"task": "retrieval", "kind": "retrieval", "dataset": micro.RETRIEVAL_DOMAIN, "protocol_hash": P0,
           "protocol": zero}
    for method, model, rm, k in (("zero-shot", student, None, 65), ("rlcf", student, reward, 69),
                                 ("zero-shot", reward, None, 150)):
        sc = correct_on(240, set(range(k)), prefix="q")
        ids.append(add_run(store, **ret, method=method, model=model, reward_model=rm, scores=sc,  # type: ignore[arg-type]
                           metrics={"t2i_r1": (100 * k / 240, None, None), "i2t_r1": (50.0, None, None)}))
    cap = {"task": "captioning", "kind": "captioning", "dataset": micro.CAPTIONING_DOMAIN, "protocol_hash": P0,
           "protocol": zero, "model": micro.CAPTIONER}
    base = {f"c{i:02d}": 0.60 + 0.005 * i for i in range(60)}
    ids.append(add_run(store, **cap, method="zero-shot", scores=base,  # type: ignore[arg-type]
                       metrics={"cider": (110.8, None, None), "bleu4": (30.0, None, None)}))
    ids.append(add_run(store, **cap, method="rlcf", reward_model=reward,  # type: ignore[arg-type]
                       scores={k: v + 0.02 for k, v in base.items()},
                       metrics={"cider": (132.9, None, None), "bleu4": (31.0, None, None)}))
    return store, ids


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, list[int], str]:
    store, ids = _default_run_store(tmp_path_factory.mktemp("summary") / "lb.sqlite")
    assert len(ids) == 175
    return store, ids, render_run_summary(store, ids, host=PluginHost(autoload=False, extra=[micro]))


def _table(text: str, heading: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    out = []
    for line in lines[start + 3:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip().strip("|").split("|")])
    return out


def test_the_default_run_fits_one_screen(default_run: tuple[Store, list[int], str]) -> None:
    _, _, text = default_run
    lines = text.splitlines()
    assert len(lines) + 1 <= 40, text  # the CLI adds one line: the leaderboard and the report commands
    first = lines[0]
    assert first.startswith("This command: 175 run(s), shown as 115 row(s); 60 more (stream orders 1, 2 of tda, "
                            "dmn-zs, dpe, boostadapter, dmn-weak, onzeta) are folded into their first run's row")


def test_rows_are_ordered_by_the_groups_average_with_references_last(default_run) -> None:
    store, _, text = default_run
    rows = _table(text, "classification · top1 (%)")
    assert len(rows) == len(EPISODIC) + len(ONLINE) + 1  # and the reward model's reference row
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    names = [d.removeprefix("micro-") for d in micro.CLASSIFICATION_DOMAINS]
    assert [c.strip() for c in header.strip("|").split("|")][1:7] == [*names, "OOD avg [95% CI]"]
    assert "· datasets micro-* ·" in text
    averages = [float(r[6].split()[0]) for r in rows[:-1]]
    assert averages == sorted(averages, reverse=True)
    assert rows[-1][0] == "zero-shot (micro-reward)"
    assert "reward model's reference run" in rows[-1][-1] and "protocol" not in rows[-1][-1]
    assert all("ranked apart" not in r[-1] for r in rows[:-1])
    tda = next(r for r in rows if r[0] == "tda")
    assert "3 stream orders folded: sd" in tda[-1]
    rlcf = next(r for r in rows if r[0] == "rlcf-prompt")
    assert rlcf[8].startswith("tpt-prompt: ")  # the family baseline named
    assert "retrieval · t2i_r1 (%) · n=240 per dataset" in text
    assert "captioning · cider · n=60 per dataset" in text


def test_a_row_apart_says_why(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'apart.sqlite'}")
    ids = [_cls(store, "micro-hard", m, _hits(m, "micro-hard")) for m in ("zero-shot", "tpt-prompt", "mta")]
    limited = _cls(store, "micro-hard", "tpt-image", _hits("x", "micro-hard"), protocol_hash="pl" + "1" * 14)
    twin = _cls(store, "micro-hard", "tpt-prompt", _hits("z", "micro-hard"), protocol_hash="pl" + "1" * 14)
    other_model = _cls(store, "micro-hard", "zero-shot", _hits("y", "micro-hard"), model="ViT-L-14@openai")
    text = render_run_summary(store, [*ids, limited, twin, other_model],
                              host=PluginHost(autoload=False, extra=[micro]))
    rows = {r[0]: r[-1] for r in _table(text, "classification")}
    assert len(rows) == 6  # the limited tpt-prompt run is a row of its own, not hidden behind the full one
    assert rows["tpt-prompt (protocol hash pl111111)"].startswith("other protocol hash")
    assert rows["tpt-image (protocol hash pl111111)"] == "other protocol hash than the main group: ranked apart"
    assert rows["zero-shot (ViT-L-14@openai)"] == "another model (ViT-L-14@openai) than the main group: ranked apart"
    assert rows["mta"] == "—"


def test_a_command_whose_runs_fold_into_earlier_rows_still_gets_its_table(tmp_path: Path) -> None:
    """``run --seed 1`` after a seed-0 run: the new runs fold into the seed-0 rows, which are shown."""
    store = Store(f"sqlite:///{tmp_path / 'seeds.sqlite'}")
    for m in ("zero-shot", "tpt-prompt"):
        _cls(store, "micro-hard", m, _hits(m, "micro-hard"), protocol={"seed": 0, "params": {}})
    seed1 = [_cls(store, "micro-hard", m, _hits(m, "micro-hard", 1), protocol={"seed": 1, "params": {}},
                  protocol_hash="s1" + "1" * 14) for m in ("zero-shot", "tpt-prompt")]
    text = render_run_summary(store, seed1, host=PluginHost(autoload=False, extra=[micro]))
    first = text.splitlines()[0]
    assert first.startswith("This command: 2 run(s); 2 (view seeds 1 of ") and "zero-shot" in first
    assert "are folded into their first run's row" in first
    assert "2 row(s) of earlier runs are shown for them" in text
    rows = {r[0]: r[-1] for r in _table(text, "classification")}
    assert set(rows) == {"zero-shot", "tpt-prompt"} and all(n.startswith("2 view seeds: top1 ") for n in rows.values())


def test_progress_line_shows_the_primary_metric_with_its_n() -> None:
    from rlcf_bench.report.run_summary import result_metrics
    from rlcf_bench_tasks import captioning, retrieval

    (ret,) = retrieval.rlcfb_register_tasks()
    shown = result_metrics({"i2t_r1": MetricValue(40.0, n=300), "t2i_r1": MetricValue(28.75, n=240)}, ret.metrics)
    assert shown == "t2i_r1=28.75 (n=240)"
    (cap,) = captioning.rlcfb_register_tasks()
    shown = result_metrics({"bleu1": MetricValue(60.0), "bleu4": MetricValue(30.0), "cider": MetricValue(132.9)},
                           cap.metrics)
    assert shown.startswith("cider=132.90")
