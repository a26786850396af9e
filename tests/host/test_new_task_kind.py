"""Proof that the host knows no task kind: a plugin defined here adds a fourth task.

The plugin (:class:`MultipleChoicePlugin`) brings a *multiple-choice image-text matching* task
(each image comes with 2 or 3 candidate captions, one right), its own dataset, its own metric
metadata and two methods (a CLIP zero-shot matcher and a "first choice" baseline). It is run
through the real CLI (runner, store), then rendered in every report format, the paper layout in
every one of its formats, and compared — with nothing in ``rlcf_bench`` knowing the task.

What is checked against an independent answer: the "first choice" method's accuracy is the share
of questions whose right caption is listed first, which the dataset's rule gives in closed form;
the zero-shot matcher's per-sample hits are recomputed here from the same tiny CLIP.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from rlcf_bench import (
    Batch,
    DatasetSpec,
    Method,
    MethodContext,
    MethodSpec,
    MetricSpec,
    MetricValue,
    Predictions,
    RunProtocol,
    SampleRecord,
    SampleScore,
    TaskMetrics,
    TaskSpec,
    hookimpl,
)
from rlcf_bench.cli import GlobalOptions, build_cli, build_host
from rlcf_bench.task import TaskRuntime

TASK = "mc-match"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 40)}
N_QUESTIONS = 10

METRICS = TaskMetrics(
    metrics=(MetricSpec("accuracy", interval="wilson"),
             MetricSpec("error", label="error rate", higher_is_better=False, interval="wilson"),
             MetricSpec("margin", label="mean score margin")),
    primary=("accuracy",),
    score=SampleScore(label="matching accuracy", percent=True, paired_test="mcnemar-exact"),
    order=5,
    n_note="for mc-match, the questions",
)


def choices_of(index: int) -> tuple[tuple[str, ...], int]:
    """Question ``index``: its candidate captions and the position of the right one. Even
    questions have 3 choices, odd ones 2; the right caption sits at ``index % n_choices``."""
    names = list(COLOURS)
    right = names[index % len(names)]
    n = 3 if index % 2 == 0 else 2
    wrong = [c for c in names if c != right][: n - 1]
    pos = index % n
    options = wrong[:pos] + [right] + wrong[pos:]
    return tuple(f"a {c} square" for c in options), pos


class Questions:
    """The task's own dataset: a solid colour patch per question, deterministic per index."""

    def __len__(self) -> int:
        return N_QUESTIONS

    def sample_id(self, index: int) -> str:
        return f"q{index:03d}"

    def load_image(self, index: int) -> Any:
        import torch

        rgb = COLOURS[list(COLOURS)[index % len(COLOURS)]]
        return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, 40, 40).clone()  # as every dataset


@dataclass
class ChoiceBatch(Batch):
    """The task's batch: the questions' candidate captions travel with the images."""

    choices: tuple[tuple[str, ...], ...] = ()


class MultipleChoiceTask(TaskRuntime):
    """One batch per number of choices (its own batching), scores ``[B, n_choices]`` per batch."""

    kind = TASK

    def all_samples(self) -> list[tuple[int, str]]:
        return [(i, self.dataset.sample_id(i)) for i in range(len(self.dataset))]

    def batches(self, items: Sequence[tuple[int, str]]) -> list[list[tuple[int, str]]]:
        groups: dict[int, list[tuple[int, str]]] = {}
        for item in items:
            groups.setdefault(len(choices_of(item[0])[0]), []).append(item)
        return list(groups.values())

    def context_fields(self, model: Any, device: Any) -> dict[str, Any]:
        return {"max_choices": 3}

    def make_batch(self, items: Sequence[tuple[int, str]], model: Any, device: Any) -> Batch:
        import torch

        from rlcf_bench.tta.views import normalize, resize_center_crop

        if len({len(choices_of(i)[0]) for i, _ in items}) != 1:
            raise ValueError("a batch holds questions with the same number of choices")
        images = torch.stack([resize_center_crop(self.dataset.load_image(i).to(device), model.image_size)
                              for i, _ in items])
        return ChoiceBatch(sample_ids=tuple(s for _, s in items), indices=tuple(i for i, _ in items),
                           images=normalize(images, model.mean, model.std),
                           targets=[choices_of(i)[1] for i, _ in items],
                           choices=tuple(choices_of(i)[0] for i, _ in items))

    def score(self, batch: Batch, predictions: Predictions) -> list[SampleRecord]:
        assert predictions.scores is not None
        scores = predictions.scores.float().cpu()
        out = []
        for row, (sid, idx) in enumerate(zip(batch.sample_ids, batch.indices)):
            top = scores[row].topk(2)
            pred = int(top.indices[0])
            out.append(SampleRecord(sid, idx, pred, batch.targets[row], float(pred == batch.targets[row]),
                                    {"margin": float(top.values[0] - top.values[1])}))
        return out

    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        from rlcf_bench.stats import wilson_interval

        n = len(records)
        hits = int(sum(r.score or 0.0 for r in records))
        lo, hi = wilson_interval(hits, n)
        margin = sum(float(r.extra["margin"]) for r in records) / n
        return {"accuracy": MetricValue(100.0 * hits / n, 100.0 * lo, 100.0 * hi, n),
                "error": MetricValue(100.0 * (n - hits) / n, 100.0 * (1 - hi), 100.0 * (1 - lo), n),
                "margin": MetricValue(margin, None, None, n)}


class MatchZeroShot(Method[None]):
    """Zero-shot matching: the caption whose CLIP text feature is closest to the image's."""

    name = "mc-zero-shot"
    tasks = frozenset({TASK})
    max_batch = 4

    def setup(self, ctx: MethodContext) -> None:
        assert ctx.task == TASK and ctx.task_fields == {"max_choices": 3}
        self.model = ctx.model

    def predict(self, batch: Batch) -> Predictions:
        assert isinstance(batch, ChoiceBatch)
        return Predictions(scores=match_scores(self.model, batch.images, batch.choices))


class FirstChoice(Method[None]):
    """Always the first caption (a baseline with a closed-form accuracy)."""

    name = "mc-first-choice"
    tasks = frozenset({TASK})
    max_batch = 4

    def setup(self, ctx: MethodContext) -> None:
        pass

    def predict(self, batch: Batch) -> Predictions:
        import torch

        assert isinstance(batch, ChoiceBatch)
        k = len(batch.choices[0])
        return Predictions(scores=torch.tensor([[float(k - j) for j in range(k)]] * len(batch)))


def match_scores(model: Any, images: Any, choices: Sequence[Sequence[str]]) -> Any:
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        img = F.normalize(model.encode_image(images).float(), dim=-1)
        texts = [t for c in choices for t in c]
        txt = F.normalize(model.encode_text(model.tokenize(texts).to(images.device)).float(), dim=-1)
        k = len(choices[0])
        return torch.einsum("be,bke->bk", img, txt.view(len(choices), k, -1))


def check_questions(data: Any) -> list[str]:
    """The task's data contract (``TaskSpec.check_data``): questions with 2 or 3 choices; their ids."""
    if not isinstance(data, Questions):
        raise ValueError(f"a {TASK} dataset is a Questions, not a {type(data).__name__}")
    if not all(len(choices_of(i)[0]) in (2, 3) for i in range(len(data))):
        raise ValueError("every question has 2 or 3 choices")
    return [data.sample_id(i) for i in range(len(data))]


class MultipleChoicePlugin:
    """The whole new task kind, registered from this test: task, dataset, methods."""

    @hookimpl
    def rlcfb_register_tasks(self) -> list[TaskSpec]:
        return [TaskSpec(name=TASK, version="1", kind=TASK, build=MultipleChoiceTask,
                         protocol=RunProtocol(n_views=1, selection_ratio=1.0), metrics=METRICS, check_data=check_questions,
                         description="multiple-choice image-text matching (test plugin)")]

    @hookimpl
    def rlcfb_register_datasets(self) -> list[DatasetSpec]:
        return [DatasetSpec(name="mc-colours", version="1", task_kinds=frozenset({TASK}),
                            build=lambda root, **params: Questions(), description="colour patch questions")]

    @hookimpl
    def rlcfb_register_methods(self) -> list[MethodSpec]:
        return [MethodSpec.from_method(MatchZeroShot), MethodSpec.from_method(FirstChoice)]


@pytest.fixture
def cli() -> Any:
    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = ["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models", MultipleChoicePlugin()]
    return build_cli(build_host(opts))


def _invoke(cli: Any, *args: str) -> str:
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def _expected_zero_shot_hits() -> list[float]:
    """The zero-shot matcher's hits, recomputed here from the same tiny CLIP and preprocessing."""
    import torch

    from rlcf_bench.tta.views import normalize, resize_center_crop
    from rlcf_bench_fixtures.tiny import load_tiny_clip

    model = load_tiny_clip("tiny-clip", torch.device("cpu"))
    hits = []
    for i in range(N_QUESTIONS):
        image = normalize(resize_center_crop(Questions().load_image(i), model.image_size)[None], model.mean, model.std)
        choices, right = choices_of(i)
        hits.append(float(int(match_scores(model, image, [choices])[0].argmax()) == right))
    return hits


def test_a_task_kind_from_a_plugin_runs_stores_and_reports_everywhere(cli: Any, tmp_path: Any) -> None:
    db = str(tmp_path / "mc.sqlite")
    assert TASK in _invoke(cli, "ls", "tasks")
    _invoke(cli, "run", "--task", TASK, "--dataset", "mc-colours", "--method", "mc-zero-shot", "--method",
            "mc-first-choice", "--model", "tiny-clip", "--db", db, "-j", "1", "--batch-size", "4", "--quiet")

    # Stored: the samples, the task's metrics and its metadata (reports read it from the store).
    with sqlite3.connect(db) as con:
        runs = dict(con.execute("select method, id from runs where task = ?", (TASK,)).fetchall())
        scores = {m: [s for (s,) in con.execute("select score from sample_results where run_id = ? order by idx",
                                                (rid,))] for m, rid in runs.items()}
        stored = json.loads(con.execute("select metrics from task_info where task = ?", (TASK,)).fetchone()[0])
    assert TaskMetrics.from_dict(stored) == METRICS
    first_right = [float(choices_of(i)[1] == 0) for i in range(N_QUESTIONS)]
    assert scores["mc-first-choice"] == first_right
    assert scores["mc-zero-shot"] == _expected_zero_shot_hits()

    # JSON: the declared primary metric, display order, paired test and units.
    rows = {r["method"]: r for r in json.loads(_invoke(cli, "report", "--db", db, "--format", "json"))}
    first = rows["mc-first-choice"]
    assert first["task"] == TASK and first["primary_metric"] == "accuracy"
    assert list(first["metrics"]) == ["accuracy", "error", "margin"]
    assert first["metrics"]["accuracy"]["value"] == pytest.approx(100.0 * sum(first_right) / N_QUESTIONS)
    assert first["metrics"]["margin"]["ci_source"] == "none"  # declared without interval: none invented
    zs_acc = 100.0 * sum(scores["mc-zero-shot"]) / N_QUESTIONS
    assert rows["mc-zero-shot"]["metrics"]["accuracy"]["value"] == pytest.approx(zs_acc)
    best, other = sorted(rows.values(), key=lambda r: (-r["metrics"]["accuracy"]["value"], r["run_id"]))
    assert best["rank"] == 1 and other["vs_best"]["test"] == "mcnemar-exact"
    assert other["vs_best"]["delta"] == pytest.approx(
        other["metrics"]["accuracy"]["value"] - best["metrics"]["accuracy"]["value"])

    # CSV: the task's metric columns in its declared order.
    header = next(csv.reader(io.StringIO(_invoke(cli, "report", "--db", db, "--format", "csv"))))
    assert [h for h in header if h in ("accuracy", "error", "margin")] == ["accuracy", "error", "margin"]

    # Markdown and HTML: the "How to read" text is drawn from the task's metadata too.
    md = _invoke(cli, "report", "--db", db, "--format", "markdown")
    # retrieval hits: exact McNemar too; open-set (ID top-1) is a registered task of the tasks plugin
    assert f"McNemar exact for classification, retrieval, {TASK} and open-set" in md
    assert ("except ECE (expected calibration error), share of the most frequent predicted class (collapse check), "
            "failed predictions (non-finite probabilities), error rate and FPR at 95% TPR of the OOD score, where lower is better") in md
    assert "for mc-match, the questions" in md and f"## {TASK} · mc-colours" in md
    assert "| run | method | method version | model | group | accuracy | error | margin |" in md
    html = _invoke(cli, "report", "--db", db, "--format", "html")
    assert f"{TASK} · mc-colours" in html
    assert '<th scope="col">accuracy</th><th scope="col">error</th><th scope="col">margin</th>' in html

    # The paper layout, every format: the task's primary metric and unit.
    paper = {fmt: _invoke(cli, "report", "--db", db, "--layout", "paper", "--format", fmt)
             for fmt in ("markdown", "csv", "html", "latex")}
    assert f"{TASK}: accuracy (%) on " in paper["markdown"]
    assert all("mc-zero-shot" in text and "mc-first-choice" in text for text in paper.values())

    # compare: the task's own score label and unit.
    text = _invoke(cli, "compare", "--db", db, str(runs["mc-zero-shot"]), str(runs["mc-first-choice"]))
    assert "matching accuracy on shared samples" in text and " points" in text
    assert "test: exact McNemar (two-sided) on per-sample correctness" in text


def test_the_new_task_kind_keeps_the_dataset_contract() -> None:
    """The dataset contract test's check (``tests/contract/test_dataset_contract.py``) through the
    task's own ``check_data``, with no task name known to it; a dataset of another shape fails it."""
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.testing import ContractViolation, check_dataset_samples

    host = PluginHost(autoload=False, extra=[MultipleChoicePlugin()])
    spec = host.registry("datasets").get("mc-colours")
    check_dataset_samples(host, spec, spec.build(None), spec.build(None))
    with pytest.raises(ContractViolation, match="is a Questions, not a list"):
        check_dataset_samples(host, spec, [1, 2], [1, 2])
