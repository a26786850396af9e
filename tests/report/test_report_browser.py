"""The HTML report in a real headless browser (Debian's chromium): it renders, draws its plots,
logs no console error, the hostile method name stays text, and its script sorts and filters the
tables (driven through the page's ``#sort=...&filter=...`` address, as a reader's link would).

Skipped when no chromium is installed (``apt-get install chromium``). The screenshot is kept as
a test artefact in ``$RLCF_BENCH_KEEP_SCREENSHOT`` (a folder), else ``test-artefacts/`` under the
test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_store import EVIL, KnownStore, write_report

from rlcf_bench import ReportSection, hookimpl
from rlcf_bench.plugins import PluginHost

pytestmark = pytest.mark.browser

# Chromium logs every console message (errors, CSP violations) as ``...:CONSOLE:<line>] "..."``;
# the page's one script logs nothing, so any console line at all is a problem.
CONSOLE_PROBLEMS = (":CONSOLE", "Uncaught", "Refused to")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH: install Debian's chromium (apt-get install chromium) to run the browser test")


def _run(browser: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-extensions", "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=2000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp)})


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.counts: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


class _Plugin:
    @hookimpl
    def rlcfb_report_sections(self, rows: Any, store: Any) -> list[ReportSection]:
        return [ReportSection("Plugin <b>notes</b>", "<script>alert('plugin')</script> is only text")]


def test_console_error_detection_works(tmp_path: Path) -> None:
    """Guard the guard: a page with a script error must be caught by the same check."""
    browser = _chromium()
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>notDefined();</script>x</body></html>")
    res = _run(browser, "--dump-dom", bad.as_uri(), tmp=tmp_path)
    assert any(p in line for line in res.stderr.splitlines() for p in CONSOLE_PROBLEMS)


def test_html_report_renders_in_headless_chromium(known: KnownStore, tmp_path: Path) -> None:
    browser = _chromium()
    host = PluginHost(autoload=False, extra=[_Plugin()])
    (page,) = write_report(known.store, tmp_path / "report", formats=("html",), host=host)
    url = page.resolve().as_uri()

    shot = tmp_path / "report.png"
    res = _run(browser, "--window-size=1400,3000", f"--screenshot={shot}", url, tmp=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000, "screenshot missing or blank"
    problems = [line for line in res.stderr.splitlines() if any(p in line for p in CONSOLE_PROBLEMS)]
    assert not problems, "console errors:\n" + "\n".join(problems)
    try:
        from PIL import Image

        with Image.open(shot) as img:
            colours = img.convert("RGB").resize((140, 300)).getcolors(maxcolors=100_000)
        assert colours is not None and len(colours) > 20, "the screenshot is (nearly) uniform"
    except ImportError:  # pragma: no cover - pillow comes with torchvision
        pass
    keep = Path(os.environ.get("RLCF_BENCH_KEEP_SCREENSHOT") or tmp_path / "test-artefacts")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "report.png")

    dom_res = _run(browser, "--dump-dom", url, tmp=tmp_path)
    assert dom_res.returncode == 0, dom_res.stderr[-2000:]
    dom = _Dom()
    dom.feed(dom_res.stdout)
    assert dom.counts.get("svg", 0) >= 6  # bar and scatter charts per task, memory where it differs
    assert dom.counts.get("path", 0) >= 20
    assert dom.counts.get("table", 0) >= 8
    assert dom.counts.get("script", 0) == 1 and dom.counts.get("b", 0) == 0  # escaped names stayed text
    text = "".join(dom.text)
    assert EVIL in text and "Plugin <b>notes</b>" in text and "<script>alert('plugin')</script>" in text
    problems = [line for line in dom_res.stderr.splitlines() if any(p in line for p in CONSOLE_PROBLEMS)]
    assert not problems, "console errors:\n" + "\n".join(problems)


def _group_column(dom_html: str, header: str) -> list[str]:
    from test_report_formats import html_tables

    tables, _ = html_tables(dom_html)
    heading, headers, rows = next(t for t in tables if t[0].startswith("Main group") and "imagenet-a" in t[0])
    col = headers.index(header)
    return [r[col] for r in rows]


def test_tables_sort_and_filter_in_headless_chromium(known: KnownStore, tmp_path: Path) -> None:
    browser = _chromium()
    (page,) = write_report(known.store, tmp_path / "report", formats=("html",))
    url = page.resolve().as_uri()
    before = _group_column(page.read_text(), "peak MB")
    assert before != sorted(before, key=lambda v: float(v.split()[0]))  # ranked by accuracy, not memory

    res = _run(browser, "--dump-dom", url + "#sort=peak%20MB", tmp=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    after = _group_column(res.stdout, "peak MB")
    assert after == sorted(before, key=lambda v: float(v.split()[0]))  # numerically, not as text
    assert 'aria-sort="ascending"' in res.stdout

    res = _run(browser, "--dump-dom", url + "#sort=peak%20MB&order=descending&filter=zero-shot", tmp=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = _Dom()
    dom.feed(res.stdout)
    hidden = res.stdout.count("<tr hidden") + res.stdout.count('hidden=""')
    assert hidden >= 3  # tpt, rlcf and the hostile-named run are filtered out of the imagenet-a group
    problems = [line for line in res.stderr.splitlines() if any(p in line for p in CONSOLE_PROBLEMS)]
    assert not problems, "console errors:\n" + "\n".join(problems)
