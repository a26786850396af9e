"""A self-contained HTML page: inline CSS, inline SVG plots, the same tables as markdown.

No external resource, so the page renders offline and can be attached to a wiki or an e-mail as
one file. One inline script (``table_script.js``, allowed by its hash in the page's
Content-Security-Policy, nothing else may run) makes every table sortable by a click on a header
and filterable from one box; ``#sort=<header>&filter=<text>`` in the address opens a sorted,
filtered view. Without JavaScript the page is the same minus sorting. Every string that comes from the store or from a plugin is passed
through :func:`html.escape`; plugin sections (markdown by contract) are shown as escaped
preformatted text rather than interpreted.
"""

from __future__ import annotations

import base64
import hashlib
import html
from functools import lru_cache
from importlib import resources

from . import charts
from .figures import task_figures
from .online import stream_plots
from .outline import Bullets, Heading, Outline, Paragraph, PluginBlock, Table
from .rows import Report

CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #fafafa; color: #1d1d1f;
       font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.reason { background: #fff4e5; border-left: 4px solid #e69f00; padding: 6px 10px; margin: 4px 0 8px; }
p.protocol { color: #444; font-size: 12.5px; margin: 2px 0 6px; }
ul.how { max-width: 1000px; }
.table-wrap { overflow-x: auto; }
td { max-width: 30em; overflow-wrap: anywhere; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
th { cursor: pointer; }
input#filter { font: inherit; padding: 4px 8px; width: 24em; margin: 6px 0 10px; }
p.note { color: #555; font-size: 12.5px; }
table { border-collapse: collapse; background: #fff; margin: 4px 0 12px; font-size: 12.5px; }
th, td { border: 1px solid #d9d9d9; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #f0f0f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.reference td { background: #f3f7fb; font-style: italic; }
tr.unranked td { color: #777; }
td.sig { font-weight: 600; }
td.below { color: #b00020; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.plot { margin: 0; background: #fff; border: 1px solid #e2e2e2; border-radius: 6px; padding: 8px; }
.plot p.caption { margin: 2px 4px; color: #555; font-size: 12px; max-width: 630px; }
.legend { display: flex; flex-wrap: wrap; gap: 10px; margin: 4px 0 8px; font-size: 12px; }
.legend span.swatch { display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px;
                      border-radius: 2px; }
section.plugin pre { background: #fff; border: 1px solid #e2e2e2; padding: 8px; white-space: pre-wrap; }
"""

_NUMERIC_HEADS = ("rank", "run", "n", "Δ", "ms", "adapt", "reward share", "peak", "measured", "reported")


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _is_numeric_column(header: str, role: str) -> bool:
    if role == "metrics":
        return header not in ("method", "model", "group")
    return header.startswith(_NUMERIC_HEADS) or "[95% CI]" in header


def _table(t: Table) -> str:
    numeric = [_is_numeric_column(h, t.role) for h in t.headers]
    out = [f'<div class="table-wrap"><table class="{e(t.role)} sortable">',
           "<thead><tr>" + "".join(f'<th scope="col">{e(h)}</th>' for h in t.headers) + "</tr></thead>", "<tbody>"]
    for i, row in enumerate(t.rows):
        kind = t.row_kinds[i] if i < len(t.row_kinds) else ""
        run = t.row_runs[i] if i < len(t.row_runs) else ""
        cells = []
        for j, cell in enumerate(row):
            classes = ["num"] if numeric[j] else []
            if " sig)" in cell or " sig," in cell:
                classes.append("sig")
            if cell.endswith(" BELOW") or cell.startswith("below its own reward model"):
                classes.append("below")
            cls = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{cls}>{e(cell)}</td>")
        out.append(f'<tr class="{e(kind)}" data-run="{e(run)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _plot(svg_text: str, caption: str) -> str:
    return f'<figure class="plot">{svg_text}<p class="caption">{e(caption)}</p></figure>'


def plots(report: Report) -> str:
    """Per task, the figures of :func:`rlcf_bench.report.figures.task_figures` inlined as SVG."""
    out = []
    for block in task_figures(report):
        out.append(f'<section class="task-plots" id="plots-{e(block.task)}"><h3>{e(block.task)}</h3>')
        out.append('<div class="plots">')
        out += [_plot(charts.to_svg(f.build()), f.caption) for f in block.figures]
        if block.note:
            out.append(f'<p class="note">{e(block.note)}</p>')
        out.append("</div></section>")
    if not out:
        return ""
    return "<h2>Plots</h2>\n" + "\n".join(out)


def render_html(outline: Outline, report: Report) -> str:
    body: list[str] = []
    plots_html = plots(report) + stream_plots(report)
    plots_done = False
    for block in outline.blocks:
        if isinstance(block, Heading):
            if block.level == 2 and not plots_done and block.text != "How to read this report":
                body.append(plots_html)
                plots_done = True
            body.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            cls = f' class="{e(block.kind)}"' if block.kind else ""
            body.append(f"<p{cls}>{e(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append('<ul class="how">' + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_table(block))
        elif isinstance(block, PluginBlock):
            if not plots_done:
                body.append(plots_html)
                plots_done = True
            body.append(f'<section class="plugin"><h2>{e(block.title)}</h2><pre>{e(block.markdown)}</pre></section>')
    if not plots_done:
        body.append(plots_html)
    title = next((b.text for b in outline.blocks if isinstance(b, Heading) and b.level == 1), "rlcf-bench")
    script, digest = table_script()
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        f"img-src data:; script-src '{digest}'\">\n"
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        '<input id="filter" type="search" placeholder="filter rows: method, dataset, model, run …" '
        'aria-label="filter table rows">\n'
        + "\n".join(body)
        + f"\n</main>\n<script>{script}</script>\n</body>\n</html>\n"
    )


@lru_cache(maxsize=1)
def table_script() -> tuple[str, str]:
    """The sorting/filtering script and its CSP source (``sha256-...``)."""
    script = resources.files(__package__).joinpath("table_script.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return script, f"sha256-{digest}"
