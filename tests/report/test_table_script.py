"""The HTML report's sorting/filtering script, run by Node.js on a minimal stand-in DOM (the
headless-Chromium test runs it on the real page where a browser is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources

import pytest

FAKE_DOM = r"""
function el(tag, text) {
  var e = {tagName: tag, textContent: text || "", attrs: {}, children: [], listeners: {}, hidden: false,
           setAttribute: function (k, v) { this.attrs[k] = String(v); },
           getAttribute: function (k) { return k in this.attrs ? this.attrs[k] : null; },
           removeAttribute: function (k) { delete this.attrs[k]; },
           addEventListener: function (k, f) { this.listeners[k] = f; },
           appendChild: function (c) { var i = this.children.indexOf(c); if (i >= 0) this.children.splice(i, 1);
                                       this.children.push(c); }};
  return e;
}
function table(headers, rows) {
  var t = el("table"), head = el("tr"), body = el("tbody");
  head.cells = headers.map(function (h) { return el("th", h); });
  t.tHead = {rows: [head]};
  rows.forEach(function (r) {
    var tr = el("tr", r.join(" ")); tr.cells = r.map(function (c) { return el("td", c); }); body.appendChild(tr);
  });
  Object.defineProperty(body, "rows", {get: function () { return this.children; }});
  t.tBodies = [body];
  return t;
}
var T = table(["rank", "method", "peak MB"], ROWS);
var box = el("input");
global.location = {hash: HASH};
global.document = {
  querySelectorAll: function (sel) {
    return sel === "table.sortable" ? [T] : sel === "table.sortable tbody tr" ? T.tBodies[0].rows.slice() : [];
  },
  getElementById: function (id) { return id === "filter" ? box : null; }
};
"""


def _run(script: str, rows: list[list[str]], hash_: str, then: str = "") -> dict:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("no node on PATH")
    program = (FAKE_DOM.replace("ROWS", json.dumps(rows)).replace("HASH", json.dumps(hash_)) + script + then
               + "\nconsole.log(JSON.stringify({order: T.tBodies[0].rows.map(function (r) { return r.cells[1].textContent; }),"
               " hidden: T.tBodies[0].rows.filter(function (r) { return r.hidden; }).length,"
               " sort: T.tHead.rows[0].cells.map(function (c) { return c.getAttribute('aria-sort'); })}));")
    res = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


ROWS = [["1", "tpt", "900 (rss)"], ["2", "zero-shot", "300 (rss)"], ["ref", "zero-shot (L14)", "1200 (rss)"],
        ["—", "broken", "—"], ["3", "rlcf", "2400 (rss)"]]
SCRIPT = resources.files("rlcf_bench.report").joinpath("table_script.js").read_text()


def test_sorts_numerically_with_text_last_and_toggles() -> None:
    out = _run(SCRIPT, ROWS, "#sort=peak%20MB")
    assert out["order"] == ["zero-shot", "tpt", "zero-shot (L14)", "rlcf", "broken"]  # 300 < 900 < 1200 < 2400, "—"
    assert out["sort"] == [None, None, "ascending"]
    clicked = _run(SCRIPT, ROWS, "#sort=peak%20MB", then="\nT.tHead.rows[0].cells[2].listeners.click();")
    assert clicked["order"] == ["broken", "rlcf", "zero-shot (L14)", "tpt", "zero-shot"]
    assert clicked["sort"] == [None, None, "descending"]
    by_rank = _run(SCRIPT, ROWS, "", then="\nT.tHead.rows[0].cells[0].listeners.click();")
    assert by_rank["order"][:3] == ["tpt", "zero-shot", "rlcf"]  # 1, 2, 3 before the text ranks


def test_filters_rows_by_text() -> None:
    out = _run(SCRIPT, ROWS, "#filter=zero-shot")
    assert out["hidden"] == 3
    typed = _run(SCRIPT, ROWS, "", then="\nbox.value = 'RLCF'; box.listeners.input();")
    assert typed["hidden"] == 4
