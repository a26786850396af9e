"""Per-class accuracy and the confusion matrix of one run (``rlcf-bench report --per-class RUN``).

Read from the run's stored per-sample rows, for runs of the classification task kind (any task
plugin of that kind stores a class index as each sample's prediction and target). Each class's accuracy (recall) has
a Wilson 95 % interval; balanced accuracy is the mean of the per-class accuracies over the
classes present in the targets, and the collapse share is the fraction of samples given the most
frequent predicted class (a method that predicts one class for almost everything shows up here
before it shows up in top-1). Class names come from the dataset when it is installed, else the
indices are shown.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..stats import wilson_interval
from ..store import Store, run_label
from .markdown import md_escape

#: The task kind whose runs store a class index as prediction and target (``TaskSpec.kind``).
LABEL_KIND = "classification"


@dataclass(frozen=True)
class ClassRow:
    index: int
    name: str
    n: int                  # samples of this class
    correct: int
    accuracy: float         # recall of the class (nan where n == 0)
    ci_low: float
    ci_high: float
    predicted: int          # samples predicted as this class


@dataclass(frozen=True)
class PerClass:
    run_id: int
    run: str
    n: int
    top1: float
    balanced_accuracy: float
    collapse_share: float   # share of samples given the most frequent predicted class
    collapse_class: int
    classes: list[ClassRow]
    confusion: list[list[int]]  # confusion[target][prediction]


def _label(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def per_class(store: Store, run_id: int, classnames: Sequence[str] | None = None) -> PerClass:
    """The per-class table of stored run ``run_id``. ``ValueError`` (one line) when the run does
    not exist, has no scored samples or does not store integer labels."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run with id {run_id} in {store.location} (ids: rlcf-bench report)")
    if run.task_kind != LABEL_KIND:
        raise ValueError(f"run {run_id} is a {run.task_kind} run: --per-class needs a run of a {LABEL_KIND} task")
    pairs: list[tuple[int, int]] = []
    for row in store.sample_rows(run_id):
        pred, target = _label(row.prediction), _label(row.target)
        if (row.extra or {}).get("skipped"):
            continue
        if pred is None or target is None:
            raise ValueError(f"run {run_id} ({run.task}) does not store class labels as predictions and targets: "
                             "--per-class needs a classification run")
        pairs.append((target, pred))
    if not pairs:
        raise ValueError(f"run {run_id} has no stored samples yet")
    n_classes = max(len(classnames or ()), 1 + max(max(t, p) for t, p in pairs))
    confusion = [[0] * n_classes for _ in range(n_classes)]
    for target, pred in pairs:
        confusion[target][pred] += 1
    predicted = Counter(p for _, p in pairs)
    rows = []
    for c in range(n_classes):
        n, correct = sum(confusion[c]), confusion[c][c]
        low, high = wilson_interval(correct, n) if n else (float("nan"), float("nan"))
        name = classnames[c] if classnames and c < len(classnames) else str(c)
        rows.append(ClassRow(c, name, n, correct, correct / n if n else float("nan"), low, high, predicted[c]))
    present = [r.accuracy for r in rows if r.n]
    top_class, top_count = predicted.most_common(1)[0]
    return PerClass(run_id, run_label(run), len(pairs), sum(r.correct for r in rows) / len(pairs),
                    sum(present) / len(present), top_count / len(pairs), top_class, rows, confusion)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}"


def render_per_class(pc: PerClass, fmt: str, max_matrix: int = 30) -> str:
    """``markdown`` (tables; the matrix up to ``max_matrix`` classes, else the 10 largest
    confusions), ``csv`` (one row per class, then the matrix) or ``json`` (everything)."""
    if fmt == "json":
        data = asdict(pc)
        for row in data["classes"]:  # JSON has no NaN: a class absent from the targets has no accuracy
            for key in ("accuracy", "ci_low", "ci_high"):
                row[key] = None if row[key] != row[key] else row[key]
        return json.dumps(data, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["class", "name", "n", "correct", "accuracy", "ci_low", "ci_high", "predicted"])
        for r in pc.classes:
            w.writerow([r.index, r.name, r.n, r.correct, *(("" if v != v else f"{v:.6f}") for v in
                                                          (r.accuracy, r.ci_low, r.ci_high)), r.predicted])
        w.writerow([])
        w.writerow(["target \\ prediction", *(r.name for r in pc.classes)])
        for r, counts in zip(pc.classes, pc.confusion):
            w.writerow([r.name, *counts])
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"--per-class writes markdown, csv or json (got {fmt!r})")
    names = [md_escape(r.name) for r in pc.classes]
    out = [f"## Per-class accuracy of run {pc.run_id}: {md_escape(pc.run)}", "",
           f"{pc.n} samples · top-1 {_pct(pc.top1)} % · balanced accuracy {_pct(pc.balanced_accuracy)} % · "
           f"most frequent prediction: {names[pc.collapse_class]} ({_pct(pc.collapse_share)} % of samples)", "",
           "| class | n | accuracy % [95% CI] | predicted as this class |", "|---|---:|---|---:|"]
    out += [f"| {names[r.index]} | {r.n} | {_pct(r.accuracy)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}] | {r.predicted} |"
            for r in pc.classes]
    out.append("")
    if len(pc.classes) <= max_matrix:
        out += ["Confusion matrix (rows: true class, columns: prediction):", "",
                "| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        out += [f"| {names[i]} | " + " | ".join(map(str, counts)) + " |" for i, counts in enumerate(pc.confusion)]
    else:
        worst = sorted(((n, t, p) for t, counts in enumerate(pc.confusion) for p, n in enumerate(counts)
                        if t != p and n), reverse=True)[:10]
        out += ["Largest confusions (true → predicted: samples):", ""]
        out += [f"* {names[t]} → {names[p]}: {n}" for n, t, p in worst]
    return "\n".join(out) + "\n"
