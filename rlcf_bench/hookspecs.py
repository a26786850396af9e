"""Hook specifications of rlcf-bench (prefix ``rlcfb_``).

Registration hooks take no arguments and return lists of frozen specs; the host flattens them
into registries and picks components by name. Lifecycle hooks let reporters observe a run. No hook
carries per-sample work: that is done by methods on the selected objects.

Every hook here is documented in ``docs/hooks.md`` under a heading ``rlcfb_<name>(args)`` and has a
test in ``tests/host/test_hookspecs.py``; a meta-test there enforces both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from .report.rows import LeaderboardRow
    from .store import Store
    from .types import (
        DatasetSpec,
        MethodSpec,
        ModelSpec,
        ReferenceResult,
        ReportSection,
        RewardModelSpec,
        RunError,
        RunResult,
        RunSpec,
        StepRecord,
        SuiteSpec,
        TaskSpec,
    )

PROJECT = "rlcf_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def rlcfb_register_tasks() -> list[TaskSpec]:
    """Announce tasks (classification, retrieval, captioning, ...).

    :return: a list of :class:`TaskSpec`; all implementations' lists are flattened.
    Who implements this: task plugins.
    """


@hookspec
def rlcfb_register_datasets() -> list[DatasetSpec]:
    """Announce datasets. Building one must be lazy: no files are read at registration.

    :return: a list of :class:`DatasetSpec`; flattened.
    Who implements this: dataset-family plugins (real layouts, the embedded micro suite).
    """


@hookspec
def rlcfb_resolve_dataset(name: str, params: Mapping[str, Any]) -> DatasetSpec | None:
    """Resolve a dataset name that no plugin registered, such as a scheme-prefixed spec
    (``folder:/path``, ``csv:/path/file.csv``): exactly one plugin may answer (two answers are an
    error naming both; plugin order never decides).

    :param name: the name exactly as the user typed it (``--dataset``, ``data check``).
    :param params: the dataset parameters given with it (``--data-param key=value``), so that an
        answer may depend on them (e.g. which column holds the labels decides the task kinds).
    :return: a :class:`DatasetSpec` whose ``name`` is ``name``, or ``None`` when the name is not
        this plugin's. Must be cheap (a peek at most): the layout is validated by the spec's
        ``check``/``build``; a dataset object may carry ``content_version`` (a hash of its
        content), which the runner stores as the run's dataset version.
    Who implements this: plugins reading generic formats (image folders, manifests, shards).
    """


@hookspec
def rlcfb_register_models() -> list[ModelSpec]:
    """Announce model names or name families (``accepts``) and their lazy loaders.

    :return: a list of :class:`ModelSpec`; flattened.
    Who implements this: model backends (open_clip, Hugging Face) and model zoos.
    """


@hookspec
def rlcfb_register_reward_models() -> list[RewardModelSpec]:
    """Announce named reward models and weighted ensembles of models.

    :return: a list of :class:`RewardModelSpec`; flattened. A spec with ``accepts`` claims the
        names that spell ensembles of models (``clip-score`` of ``rlcf_bench_models``: any model name
        is a single reward model).
    Who implements this: plugins shipping reward ensembles (e.g. RLCF-S).
    """


@hookspec
def rlcfb_register_methods() -> list[MethodSpec]:
    """Announce test-time adaptation methods.

    :return: a list of :class:`MethodSpec` (``MethodSpec.from_method(cls)``); flattened.
    Who implements this: every method file in ``baselines/`` and method plugins.
    """


@hookspec
def rlcfb_register_suites() -> list[SuiteSpec]:
    """Announce suites: plain named lists of runs (``rlcf-bench run --suite NAME``).

    :return: a list of :class:`SuiteSpec`; flattened.
    Who implements this: the embedded micro suite, the paper-table suites.
    """


@hookspec
def rlcfb_register_references() -> list[ReferenceResult]:
    """Announce numbers reported elsewhere (papers), stored as reference rows.

    :return: a list of :class:`ReferenceResult`; flattened.
    Who implements this: plugins that know the published numbers of a setting.
    """


@hookspec
def rlcfb_run_start(run_id: int, spec: RunSpec, n_total: int, n_done: int) -> None:
    """A run starts (or resumes with ``n_done`` samples already stored).

    :param run_id: the run's row id in the leaderboard store.
    :param spec: the run's identity and provenance.
    :param n_total: samples the run will cover; ``n_done``: already stored before this start.
    Who implements this: reporters and loggers (progress bars, experiment trackers).
    """


@hookspec
def rlcfb_run_step(step: StepRecord) -> None:
    """A batch of samples was adapted, predicted and stored.

    :param step: sample ids and device-synchronised adapt/predict milliseconds of the batch.
    Who implements this: progress reporters and loggers. Must be cheap: it runs per batch.
    """


@hookspec
def rlcfb_run_finish(result: RunResult) -> None:
    """A run completed; its metrics are stored.

    :param result: metrics with confidence intervals, latency summary and peak memory.
    Who implements this: reporters.
    """


@hookspec
def rlcfb_run_error(error: RunError) -> None:
    """A run raised. The samples stored so far are kept; re-running resumes after them.

    :param error: exception type, message and traceback, with the run's spec when known.
    Who implements this: reporters.
    """


@hookspec
def rlcfb_display_names() -> Mapping[str, str]:
    """Announce display names: a method, model, dataset, metric, task or average name (the key)
    and the text a paper's table prints for it (e.g. ``{"tpt-prompt": "TPT"}``).

    :return: a mapping; the first plugin to name a key wins, ``report --label KEY=TEXT`` overrides.
    Who implements this: suites (their datasets' short names) and method plugins. Plain text,
    escaped by every report format.
    """


@hookspec
def rlcfb_add_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``rlcf-bench`` click group.

    :param cli: the :class:`click.Group`; call ``cli.add_command(...)`` or use ``@cli.command``.
    Who implements this: plugins with their own commands (e.g. ``micro train-zoo``).
    """


@hookspec
def rlcfb_report_sections(rows: Sequence[LeaderboardRow], store: Store) -> list[ReportSection]:
    """Contribute sections to ``rlcf-bench report``.

    :param rows: the leaderboard rows being reported (``rlcf_bench.report.LeaderboardRow``).
    :param store: the open :class:`rlcf_bench.store.Store`, for further queries.
    :return: a list of :class:`ReportSection`; flattened, appended after the built-in tables.
    Who implements this: plugins adding analyses to reports. Text is escaped before HTML.
    """
