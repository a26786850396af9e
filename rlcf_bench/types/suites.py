"""Suites: named lists of run requests, with the dataset averages and method comparisons their
reports make."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunRequest:
    """One run to execute: what a suite lists, the planner narrows and the runner runs.

    ``method_options`` are ``-m key=value`` pairs (strings or typed values) for the implementation
    of ``method`` that serves the task; ``reward_model`` is used only by methods that need one.
    """

    task: str
    dataset: str
    method: str
    model: str
    reward_model: str | None = None
    method_options: tuple[tuple[str, Any], ...] = ()
    dataset_params: tuple[tuple[str, Any], ...] = ()
    protocol_overrides: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        reward = f" reward={self.reward_model}" if self.reward_model else ""
        opts = "".join(f" {k}={v}" for k, v in self.method_options)
        limit = dict(self.protocol_overrides).get("limit")
        shown = dict(self.dataset_params)
        if limit is not None and isinstance(shown.get("n"), int):
            shown["n"] = min(int(limit), shown["n"])  # the samples the run scores, not the dataset's size
        elif limit is not None:
            shown["limit"] = limit
        params = "".join(f" {k}={v}" for k, v in shown.items())
        order = dict(self.protocol_overrides).get("order_seed")
        stream = f" order_seed={order}" if order is not None else ""
        return f"{self.task}/{self.dataset}{params} {self.method}{opts}{stream} model={self.model}{reward}"


#: A suite's entry is a run request (the name suites have always used).
SuiteRun = RunRequest


@dataclass(frozen=True)
class DatasetAverage:
    """A named group of datasets whose primary metric a report averages (the paper's "OOD avg").

    Declared by the suite that runs them (:attr:`SuiteSpec.averages`), never listed in the
    report: a method gets an average row only where it has comparable runs on every dataset of
    the group, with a paired test pooled over all their samples (:mod:`rlcf_bench.report.averages`).
    ``task_kind``: the task whose runs are averaged (empty: every task the datasets were run with).
    """

    name: str
    datasets: tuple[str, ...]
    task_kind: str = ""

    def covers(self, task_kind: str) -> bool:
        return not self.task_kind or self.task_kind == task_kind

    def __post_init__(self) -> None:
        if not self.name or len(self.datasets) < 2 or len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"average {self.name!r}: expected a name and two or more distinct datasets, "
                             f"got {self.datasets!r}")


@dataclass(frozen=True)
class MethodFamily:
    """Methods that share a baseline (e.g. RLCF and C-TPT on the prompt against TPT on the
    prompt): each member is compared with ``baseline`` in every report. The paper layout lists
    a family's rows together, its baseline first."""

    name: str
    baseline: str
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.baseline or self.baseline in self.members:
            raise ValueError(f"family {self.name!r}: expected a name, a baseline and members other than the "
                             f"baseline, got baseline {self.baseline!r} and members {self.members!r}")


@dataclass(frozen=True)
class Comparisons:
    """Which paired comparisons a suite's reports make (the core names no method).

    ``reference``: the method every other method is compared with (e.g. zero-shot), and whose
    run with a method's reward model is that method's reward-model reference. ``families``: each
    member against its family's baseline. ``pairs``: any further (method, against) pairs (what
    ``rlcf-bench report --compare A B`` adds). Each (reference or baseline, task, setting) is one
    family of tests for the multiplicity adjustment (docs/statistics.md)."""

    reference: str = ""
    families: tuple[MethodFamily, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def baseline_of(self, method: str) -> str | None:
        """The baseline of the first family ``method`` is a member of (None: none)."""
        return next((f.baseline for f in self.families if method in f.members), None)

    def family_of(self, method: str) -> str | None:
        """The family ``method`` belongs to, as its member or its baseline."""
        return next((f.name for f in self.families if method in f.members or method == f.baseline), None)

    def merged(self, other: Comparisons) -> Comparisons:
        """This declaration with ``other``'s added (the first reference wins; families and pairs
        are kept once each)."""
        return Comparisons(self.reference or other.reference,
                           tuple(dict.fromkeys((*self.families, *other.families))),
                           tuple(dict.fromkeys((*self.pairs, *other.pairs))))


#: No comparisons declared (the default of a suite, and of a report built without plugins).
NO_COMPARISONS = Comparisons()


@dataclass(frozen=True)
class SuiteSpec:
    """A plain named list of runs. ``expand(methods)`` yields them; it never aggregates.
    ``orders``: stream orders each online method is run with (``--orders`` overrides).
    ``averages``: the dataset groups whose average the reports show (e.g. the OOD average).
    ``comparisons``: the reference method and method families the reports compare with.
    ``seeds``: protocol (view) seeds each run is made with (``--seeds`` overrides).
    ``shared``: a suite several plugins contribute to (e.g. ``protocols``): the parts registered
    under one name, all ``shared``, make one suite (:meth:`merge`), so no list names them."""

    name: str
    description: str
    runs: Callable[..., Sequence[SuiteRun]]
    provider: str = ""
    orders: int = 1
    averages: tuple[DatasetAverage, ...] = ()
    comparisons: Comparisons = NO_COMPARISONS
    seeds: int = 1
    shared: bool = False

    def merge(self, other: SuiteSpec) -> SuiteSpec:
        """This shared suite with ``other``'s part added: runs of both (in plugin order), the larger
        ``orders``/``seeds``, both parts' averages and comparisons."""
        first, second = self.runs, other.runs

        def runs(methods: Any) -> list[SuiteRun]:
            return list(dict.fromkeys([*first(methods), *second(methods)]))

        return dataclasses.replace(
            self, runs=runs, provider=f"{self.provider}+{other.provider}", orders=max(self.orders, other.orders),
            seeds=max(self.seeds, other.seeds), averages=tuple(dict.fromkeys((*self.averages, *other.averages))),
            comparisons=self.comparisons.merged(other.comparisons))
