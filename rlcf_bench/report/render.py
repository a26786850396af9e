"""Entry points the CLI calls: render one format to a string, or write all formats to files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..types import Comparisons, ReportSection
from .averages import declared_averages, declared_comparisons
from .build import build_report
from .claims import DEFAULT_ADJUSTMENT
from .csv_table import render_csv
from .filters import NameFilter, Selection, names
from .html_page import render_html
from .json_rows import render_json
from .labels import display_names
from .markdown import render_markdown
from .options import method_defaults
from .outline import build_outline
from .paper import build_paper_tables
from .paper_formats import normalise_paper_format, render_paper_tables
from .references import reference_rows
from .rows import Report
from .tasks import catalog_from

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost
    from ..store import Store

FORMATS: tuple[str, ...] = ("markdown", "csv", "json", "html")
EXTENSIONS: dict[str, str] = {"markdown": "md", "csv": "csv", "json": "json", "html": "html"}
_ALIASES = {"md": "markdown", "htm": "html"}


def normalise_format(fmt: str) -> str:
    name = _ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return name


@dataclass(frozen=True)
class ClaimOptions:
    """What a report compares and how it adjusts: ``pairs`` added to the suites' declared
    comparisons (``report --compare A B``), ``comparisons`` replacing them (None: the suites'),
    ``adjustment`` ``holm`` (default) or ``bh``; ``spread_tests``: test methods run with several
    view seeds / stream orders over all of them (:mod:`rlcf_bench.report.spread_tests`)."""

    pairs: tuple[tuple[str, str], ...] = ()
    comparisons: Comparisons | None = None
    adjustment: str = DEFAULT_ADJUSTMENT
    spread_tests: bool = False


DEFAULT_CLAIMS = ClaimOptions()


def build_for(store: Store, host: PluginHost | None, *, task: str | None = None, dataset: NameFilter = None,
              method: NameFilter = None, claims: ClaimOptions = DEFAULT_CLAIMS) -> Report:
    """The report as the installed plugins see it: their methods' defaults decide the options
    shown, their suites' declared dataset groups the average rows and declared comparisons the
    paired tests, and their tasks' metric metadata reads the runs of any task the store recorded
    none for."""
    declared = claims.comparisons if claims.comparisons is not None else declared_comparisons(host)
    declared = declared.merged(Comparisons(pairs=claims.pairs))
    return build_report(store, task=task, dataset=dataset, method=method, method_defaults=method_defaults(host),
                        averages=declared_averages(host), tasks=catalog_from(store, host), comparisons=declared,
                        adjustment=claims.adjustment, spread_tests=claims.spread_tests,
                        references=reference_rows(store, host))


def _plugin_sections(host: PluginHost | None, report: Report, store: Store) -> list[ReportSection]:
    if host is None:
        return []
    sections: Sequence[Any] = host.report_sections(report.rows, store)
    out = []
    for s in sections:
        if not isinstance(s, ReportSection):
            raise TypeError(f"rlcfb_report_sections must return ReportSection objects, got {type(s).__name__}")
        out.append(s)
    return out


def render_report(report: Report, fmt: str, sections: Sequence[ReportSection] = ()) -> str:
    """Render an already built report. Plugin sections go into markdown and HTML only (CSV and
    JSON stay machine-readable tables of rows)."""
    name = normalise_format(fmt)
    if name == "csv":
        return render_csv(report)
    if name == "json":
        return render_json(report)
    outline = build_outline(report, sections)
    return render_markdown(outline) if name == "markdown" else render_html(outline, report)


def render(store: Store, fmt: str, *, host: PluginHost | None = None, task: str | None = None,
           dataset: NameFilter = None, method: NameFilter = None, claims: ClaimOptions = DEFAULT_CLAIMS) -> str:
    """The leaderboard of the finished runs in ``store`` as markdown, csv, json or html."""
    name = normalise_format(fmt)
    report = build_for(store, host, task=task, dataset=dataset, method=method, claims=claims)
    sections = _plugin_sections(host, report, store) if name in ("markdown", "html") else []
    return render_report(report, name, sections)


def write_report(store: Store, out_dir: str | Path, formats: Iterable[str] = FORMATS, host: PluginHost | None = None,
                 *, task: str | None = None, dataset: NameFilter = None, method: NameFilter = None,
                 stem: str = "leaderboard", claims: ClaimOptions = DEFAULT_CLAIMS) -> list[Path]:
    """Write ``<stem>.<ext>`` per format into ``out_dir`` (created); return the paths written.

    The report is built once and the plugin sections are asked for once, so every file shows
    the same numbers.
    """
    names = [normalise_format(f) for f in formats]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_for(store, host, task=task, dataset=dataset, method=method, claims=claims)
    sections = _plugin_sections(host, report, store) if any(n in ("markdown", "html") for n in names) else []
    paths = []
    for name in dict.fromkeys(names):
        path = out / f"{stem}.{EXTENSIONS[name]}"
        path.write_text(render_report(report, name, sections), encoding="utf-8")
        paths.append(path)
    return paths


def render_paper(store: Store, fmt: str, *, host: PluginHost | None = None, task: str | None = None,
                 dataset: NameFilter = None, method: NameFilter = None, intervals: bool = False,
                 reported: bool = True, claims: ClaimOptions = DEFAULT_CLAIMS,
                 labels: Mapping[str, str] | None = None) -> str:
    """The paper layout (methods x datasets, averages last) as markdown, csv, html or latex;
    ``reported`` adds the paper's numbers stored as references as grey rows. ``method``/``dataset``
    (a name or several) hide rows and columns; the best marks stay those of every method's runs,
    and each filtered table's caption says so. ``labels`` (``--label KEY=TEXT``) override the
    plugins' display names (:mod:`rlcf_bench.report.labels`)."""
    name = normalise_paper_format(fmt)
    report = build_for(store, host, task=task, dataset=dataset, claims=claims)  # every method: marks as unfiltered
    selection = Selection.of(method, dataset)
    tables = build_paper_tables(report, reference_rows(store, host) if reported else (), reported=reported,
                                methods=names(method), scope=selection.scope_text() if selection.active else "",
                                names=display_names(host, labels))
    return render_paper_tables(tables, name, intervals=intervals)
