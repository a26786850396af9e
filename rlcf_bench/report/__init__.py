"""Leaderboard reports generated from the store: markdown, CSV, JSON and a self-contained HTML page.

Public API (what ``rlcf-bench report`` and ``rlcf-bench compare`` call):

- :func:`build_rows` — the leaderboard rows (:class:`LeaderboardRow`) of the finished runs;
- :func:`render` — one format as a string (``markdown``, ``csv``, ``json``, ``html``);
- :func:`write_report` — all requested formats written to a folder;
- :func:`render_paper` — the paper layout (methods x datasets, averages last) as markdown, CSV,
  HTML or LaTeX;
- :func:`compare` / :func:`compare_runs` — the paired comparison of two runs, as text / numbers.

Reports know no task by name: each task's metric metadata (:class:`rlcf_bench.types.TaskMetrics`,
recorded in the store with its runs; :mod:`rlcf_bench.report.tasks`) says how its runs are read.

Only comparable runs are ranked together; see :mod:`rlcf_bench.report.rows` for the rules.
"""

from __future__ import annotations

from .build import build_report, build_rows
from .compare import PairedComparison, RunBrief, compare, compare_runs, format_comparison
from .paper import PaperCell, PaperRow, PaperTable, build_paper_tables
from .paper_formats import PAPER_FORMATS, render_paper_tables
from .render import (
    FORMATS,
    ClaimOptions,
    build_for,
    normalise_format,
    render,
    render_paper,
    render_report,
    write_report,
)
from .rows import (
    ComparableGroup,
    Comparison,
    DatasetSection,
    LeaderboardRow,
    Report,
    ReportedValue,
    RewardModelReference,
)
from .scores import PairedTest, paired_test
from .tasks import TaskCatalog, catalog_from

__all__ = [
    "FORMATS", "PAPER_FORMATS", "PaperCell", "PaperRow", "PaperTable", "build_paper_tables", "render_paper",
    "render_paper_tables", "ComparableGroup", "Comparison", "DatasetSection", "LeaderboardRow", "PairedComparison", "PairedTest",
    "Report", "ReportedValue", "RewardModelReference", "RunBrief", "build_report", "build_rows", "compare",
    "compare_runs", "format_comparison", "normalise_format", "paired_test", "render", "render_report",
    "write_report", "TaskCatalog", "catalog_from", "ClaimOptions", "build_for",
]
