"""Read commands never write to a store (issue 31, case 3).

``report`` (every format and layout), ``compare``, ``ls`` and ``data check`` run on a read-only
store file and on a store whose write lock another process holds; the file's bytes are the same
before and after, and each command succeeds. The paper's reference rows are stored by ``run`` or
``rlcf-bench store refresh-references``; reports overlay the installed plugins' rows in memory.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGINS = ["--disable-plugin-autoload", "-p", "rlcf_bench_tasks", "-p", "rlcf_bench_baselines", "-p", "rlcf_bench_fixtures",
           "-p", "rlcf_bench_datasets"]
PAPER_NUMBER = textwrap.dedent("""
    from rlcf_bench import hookimpl
    from rlcf_bench.types import ReferenceResult

    @hookimpl
    def rlcfb_register_references():
        return [ReferenceResult("classification", "tiny-colors", "zero-shot", "tiny-clip", "top1", 12.75,
                                "Test et al. 2099")]
""")


def cli(args, capsys):
    from rlcf_bench.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code or 0, out.out + out.err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_commands(db: Path, out: Path) -> list[list[str]]:
    d = ["--db", str(db)]
    return [
        ["report", *PLUGINS, "--layout", "full", *d], ["report", *PLUGINS, "--format", "csv", *d],
        ["report", *PLUGINS, "--format", "json", *d], ["report", *PLUGINS, "--format", "html", *d],
        ["report", *PLUGINS, "--layout", "paper", "--format", "latex", "--intervals", *d],
        ["report", *PLUGINS, "--layout", "paper", *d],
        ["report", *PLUGINS, "--all-formats", "--out", str(out), *d],
        ["report", *PLUGINS, *d],  # the one-screen summary
        ["compare", *PLUGINS, "2", "1", *d],
        ["ls", *PLUGINS], ["ls", "methods", *PLUGINS], ["ls", "datasets", *PLUGINS],
        ["data", "check", "tiny-colors", *PLUGINS],
    ]


@pytest.fixture(scope="module")
def made_store(tmp_path_factory) -> Path:
    """Two finished runs, written by ``run`` (which also stores the reference rows), and a
    plugin with a paper number for one of them."""
    folder = tmp_path_factory.mktemp("made")
    (folder / "refs").mkdir()
    (folder / "refs" / "paper_number.py").write_text(PAPER_NUMBER)
    PLUGINS.extend(["--plugins-dir", str(folder / "refs")])
    db = folder / "lb.sqlite"
    from rlcf_bench.cli import main

    with pytest.raises(SystemExit) as info:
        main(["run", *PLUGINS, "--task", "classification", "--dataset", "tiny-colors", "--model", "tiny-clip",
              "--method", "zero-shot", "--method", "tpt-prompt", "--limit", "3", "-q", "--device", "cpu", "-j", "1",
              "--db", str(db)])
        raise SystemExit(0)
    assert (info.value.code or 0) == 0
    assert sqlite3.connect(db).execute('select count(*) from "references"').fetchone()[0] > 0
    return db


def _copy(made: Path, folder: Path, *, without_references: bool = False) -> Path:
    folder.mkdir()
    db = folder / "lb.sqlite"
    src, dst = sqlite3.connect(made), sqlite3.connect(db)
    src.backup(dst)  # the committed content, whatever still sits in the source's WAL
    src.close()
    dst.execute("PRAGMA journal_mode=WAL")  # as run leaves a store
    dst.close()
    if without_references:  # a store written before the plugins registered these numbers
        con = sqlite3.connect(db)
        con.execute('delete from "references"')
        con.commit()
        con.close()
    return db


def _run_all(db: Path, tmp: Path, capsys, monkeypatch) -> list[str]:
    monkeypatch.setenv("RLCF_BENCH_DB", str(db))
    before = digest(db)
    outputs = []
    for args in read_commands(db, tmp / "reports"):
        code, text = cli(args, capsys)
        assert code == 0 and "Traceback" not in text, (args, text)
        assert digest(db) == before, args
        outputs.append(text)
    return outputs


def test_read_commands_on_a_read_only_store_change_nothing(made_store, tmp_path, capsys, monkeypatch):
    db = _copy(made_store, tmp_path / "ro", without_references=True)
    db.chmod(0o444)
    outputs = _run_all(db, tmp_path, capsys, monkeypatch)
    # the paper's numbers were computed in memory: the reports show them all the same
    assert "12.75" in outputs[0] and "12.75" in outputs[5], outputs[5]
    assert sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute('select count(*) from "references"').fetchone() == (0,)


WRITER = textwrap.dedent("""
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
    con.execute("BEGIN IMMEDIATE")  # the write lock, held until we are told to let go
    con.execute("insert into schema_info values ('held-by-another-process', 'x')")
    print("holding", flush=True)
    sys.stdin.readline()
    con.execute("ROLLBACK")
""")


def test_read_commands_on_a_store_another_process_writes_change_nothing(made_store, tmp_path, capsys, monkeypatch):
    db = _copy(made_store, tmp_path / "locked", without_references=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "holding"
        _run_all(db, tmp_path, capsys, monkeypatch)
    finally:
        writer.communicate("done\n", timeout=60)
    assert writer.returncode == 0


def test_refresh_references_writes_them_and_report_shows_the_same(made_store, tmp_path, capsys):
    db = _copy(made_store, tmp_path / "rw", without_references=True)
    paper = ["report", *PLUGINS, "--layout", "paper", "--db", str(db)]
    code, in_memory = cli(paper, capsys)
    assert code == 0
    code, text = cli(["store", "refresh-references", *PLUGINS, "--db", str(db)], capsys)
    assert code == 0 and "reference row(s) added" in text, text
    assert sqlite3.connect(db).execute('select count(*) from "references"').fetchone()[0] > 0
    code, stored = cli(paper, capsys)
    assert code == 0 and stored == in_memory
    code, text = cli(["store", "refresh-references", *PLUGINS, "--db", str(tmp_path / "none.sqlite")], capsys)
    assert code == 2 and "does not exist" in text and not (tmp_path / "none.sqlite").exists()
