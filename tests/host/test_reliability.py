"""Regression tests of the fault battery: invalid input writes nothing, a store is checked before
it is touched, failures are one line naming the thing and the problem, set-up failures are not
masked, corrupt data follows the declared policy, interrupts and dead parents are handled.
(Concurrent writers: test_concurrent_writers.py; fp32 retrieval rankings:
tests/retrieval/test_ranked_scores_fp32.py; the fuzz test: test_cli_fuzz.py.)"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PLUGINS = ["--disable-plugin-autoload", "-p", "rlcf_bench_tasks", "-p", "rlcf_bench_baselines", "-p", "rlcf_bench_fixtures"]
RUN = ["run", *PLUGINS, "--task", "classification", "--dataset", "tiny-colors", "--model", "tiny-clip", "-q",
       "--device", "cpu"]


def cli(args, capsys):
    """``main(args)`` in-process: (exit code, stderr)."""
    from rlcf_bench.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return info.value.code or 0, capsys.readouterr().err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ 3. validation before writing
@pytest.mark.parametrize("bad", [
    ["--method", "zero-shot", "--limit", "-3"], ["--method", "zero-shot", "--limit", "0"],
    ["--method", "zero-shot", "--batch-size", "0"], ["--method", "tpt-prompt", "-m", "steps=-1"],
    ["--method", "tpt-prompt", "-m", "lr=nan"], ["--method", "tpt-prompt", "-m", "lr=-1"],
    ["--method", "tpt-prompt", "-m", "lr=inf"], ["--method", "zero-shot", "--jobs", "0"],
    ["--method", "zero-shot", "--protocol-param", "n_views=0"],
    ["--method", "zero-shot", "--protocol-param", "n_views=abc"],
    ["--method", "zero-shot", "--protocol-param", "selection_ratio=2"],
    ["--method", "zero-shot", "--protocol-param", "order=random"],
    ["--method", "zero-shot", "--protocol-param", "seed=-1"],
], ids=lambda b: " ".join(b[1:]))
def test_invalid_numbers_are_refused_before_anything_is_written(tmp_path, capsys, bad):
    db = tmp_path / "lb.sqlite"
    code, err = cli([*RUN, *bad, "--db", str(db)], capsys)
    assert code == 2
    line = one_line_error(err)
    assert bad[-1].split("=")[0].lstrip("-") in line or bad[-2].lstrip("-") in line, line
    assert not db.exists()


def test_protocol_params_are_read_as_the_protocols_types(tmp_path, capsys):
    """``--protocol-param n_views=4`` is the integer 4 (it used to reach the views as a string)."""
    from rlcf_bench.store import Store

    db = tmp_path / "lb.sqlite"
    code, err = cli([*RUN, "--method", "mta", "--limit", "2", "--protocol-param", "n_views=4",
                     "--protocol-param", "selection_ratio=0.5", "--db", str(db)], capsys)
    assert code == 0, err
    runs = Store(f"sqlite:///{db}").runs()
    assert len(runs) == 1
    protocol = runs[0].protocol
    assert protocol["n_views"] == 4 and protocol["selection_ratio"] == 0.5


def test_every_method_config_range_is_enforced_by_the_host():
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.types import config_from_pairs

    host = PluginHost(autoload=False, extra=["rlcf_bench_baselines", "rlcf_bench_rlcf"])
    checked = 0
    for spec in host.registry("methods"):
        fields = getattr(spec.config_cls, "__dataclass_fields__", {})
        for name, value in (("steps", "-1"), ("lr", "nan"), ("lr", "0"), ("lr", "inf")):
            if name in fields:  # the host's range check, or the method's own (stricter) one
                with pytest.raises(ValueError, match=f"{name}="):
                    config_from_pairs(spec.config_cls, [(name, value)])
                checked += 1
    assert checked >= 10


# ------------------------------------------------------------------ 4. store safety
def test_a_newer_schema_is_refused_and_the_file_left_untouched(tmp_path, capsys):
    db = tmp_path / "new.sqlite"
    con = sqlite3.connect(db)  # a future rlcf-bench's store: another version, tables we do not know
    con.execute("create table schema_info (key varchar(64) primary key, value varchar(256))")
    con.execute("insert into schema_info values ('schema_version', '2')")
    con.execute("create table future (x integer)")
    con.commit()
    con.close()
    before = digest(db)
    code, err = cli([*RUN, "--method", "zero-shot", "--limit", "2", "--db", str(db)], capsys)
    assert code == 2 and "schema version 2" in one_line_error(err)
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.sqlite"]  # no -wal/-shm either


@pytest.mark.parametrize("kind", ["not-sqlite", "truncated", "read-only", "foreign-sqlite"])
def test_unusable_stores_are_refused_with_one_line_and_untouched(tmp_path, capsys, store, kind):
    from rlcf_bench.types import ReferenceResult

    db = tmp_path / f"{kind}.sqlite"
    if kind == "not-sqlite":
        db.write_text("this is not a database\n" * 100)
    elif kind == "foreign-sqlite":
        con = sqlite3.connect(db)
        con.execute("create table something_else (x integer)")
        con.commit()
        con.close()
    else:
        store.upsert_references([ReferenceResult("classification", f"d{i}", "m", "x", "top1", 1.0, "s")
                                 for i in range(400)])
        store.engine.dispose()
        data = Path(store.url.removeprefix("sqlite:///")).read_bytes()
        db.write_bytes(data[: len(data) // 3] if kind == "truncated" else data)
        if kind == "read-only":
            db.chmod(0o444)
    before = digest(db)
    code, err = cli([*RUN, "--method", "zero-shot", "--limit", "2", "--db", str(db)], capsys)
    line = one_line_error(err)
    assert code == 2 and str(db) in line, line
    assert digest(db) == before


def test_report_never_creates_a_store_and_a_missing_folder_is_an_error(tmp_path, capsys):
    code, err = cli(["report", *PLUGINS, "--db", str(tmp_path / "typo.sqlite")], capsys)
    assert code == 2 and "does not exist" in one_line_error(err)
    code, err = cli([*RUN, "--method", "zero-shot", "--limit", "2", "--db", str(tmp_path / "no" / "lb.sqlite")], capsys)
    assert code == 2 and "does not exist" in one_line_error(err)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 7. one-line errors
@pytest.mark.parametrize("url, expected", [
    ("postgresql+nosuchdriver://u@h/db", "database URL"),
    ("not a url://x", "database URL"),
    ("postgresql+pg8000://postgres@127.0.0.1:1/x", "leaderboard database"),
])
def test_bad_or_unreachable_database_urls_are_one_line(capsys, url, expected):
    if "pg8000" in url:
        pytest.importorskip("pg8000")
    code, err = cli([*RUN, "--method", "zero-shot", "--limit", "2", "--db", url], capsys)
    assert code == 2 and expected in one_line_error(err)


def test_cuda_without_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    db = tmp_path / "lb.sqlite"
    args = [a for a in RUN if a not in ("--device", "cpu")]
    code, err = cli([*args, "--method", "zero-shot", "--limit", "2", "--device", "cuda", "--db", str(db)], capsys)
    assert code == 2 and "CUDA is not available" in one_line_error(err)
    assert not db.exists()


def test_misspelt_hook_and_raising_hook_name_the_plugin(tmp_path, capsys):
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "typo.py").write_text(
        "from rlcf_bench import hookimpl\n@hookimpl\ndef rlcfb_register_metods():\n    return []\n")
    code, err = cli(["ls", "methods", *PLUGINS, "--plugins-dir", str(tmp_path / "typo")], capsys)
    line = one_line_error(err)
    assert code == 2 and "plugins_dir.typo" in line and "rlcfb_register_metods" in line
    (tmp_path / "raiser").mkdir()
    (tmp_path / "raiser" / "raiser.py").write_text(
        "from rlcf_bench import hookimpl\n@hookimpl\ndef rlcfb_register_methods():\n    raise KeyError('boom')\n")
    code, err = cli(["ls", "methods", *PLUGINS, "--plugins-dir", str(tmp_path / "raiser")], capsys)
    line = one_line_error(err)
    assert code == 2 and "plugins_dir.raiser" in line and "boom" in line
    code, err = cli(["ls", "methods", *PLUGINS, "--plugins-dir", str(tmp_path / "raiser"), "-v"], capsys)
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")  # -v keeps the traceback


def test_a_truncated_safetensors_file_is_one_line(tmp_path, capsys):
    import json

    from open_clip.model import CLIP
    from safetensors.torch import save_file

    from rlcf_bench_fixtures.tiny import TINY_CLIP_CONFIG
    from rlcf_bench_models._formats import CheckpointError, read_state_dict

    path = tmp_path / "w.safetensors"
    (tmp_path / "w.json").write_text(json.dumps(TINY_CLIP_CONFIG))  # the architecture sidecar
    save_file({k: v.contiguous() for k, v in CLIP(**TINY_CLIP_CONFIG).state_dict().items()}, str(path))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="not a complete safetensors file"):
        read_state_dict(path)
    code, err = cli([*RUN, "--method", "zero-shot", "--limit", "2", "--model", f"tiny@{path}", "-p",
                     "rlcf_bench_models", "--db", str(tmp_path / "lb.sqlite")], capsys)
    one_line_error(err)  # one error line (the pre-flight check may list details under it)
    assert code in (1, 2) and "w.safetensors" in err and "not a complete safetensors file" in err, err


# ------------------------------------------------------------------ 6. set-up failure is itself
@pytest.mark.parametrize("option, expected", [("coop=/nonexistent.pt", "nonexistent.pt")])
def test_a_failed_setup_is_reported_as_itself_with_the_traceback_stored(runner, store, option, expected):
    from rlcf_bench.runner import MethodError, RunRequest

    key, value = option.split("=")
    req = RunRequest("classification", "tiny-colors", "tpt-prompt", "tiny-clip",
                     method_options=((key, value),), protocol_overrides=(("limit", 2),))
    with pytest.raises(MethodError, match=f"failed in setup.*{expected}") as info:
        runner.run(req)
    assert "rlcf_bench_baselines.tpt_prompt" in str(info.value)
    (run,) = store.runs(status="failed")
    assert run.error.startswith("method 'tpt-prompt'") and "Traceback" in run.error


def test_reset_after_a_failed_setup_does_not_raise():
    from rlcf_bench_baselines.tpt_prompt import TPTPrompt, TPTPromptConfig

    TPTPrompt(TPTPromptConfig()).reset()  # setup never ran: nothing to restore, no AttributeError


# ------------------------------------------------------------------ 5. corrupt images
def folder_dataset_plugin(root: Path) -> str:
    return textwrap.dedent('''
        from pathlib import Path
        from rlcf_bench import DatasetSpec, hookimpl
        from rlcf_bench.datasets import decode_image

        class Folder:
            classnames = ("red", "blue")
            templates = ("a photo of a {}.",)
            def __init__(self, root):
                self.files = sorted(Path(root, "folder").glob("*.png"))
            def __len__(self):
                return len(self.files)
            def sample_id(self, i):
                return self.files[i].name
            def label(self, i):
                return i % 2
            def load_image(self, i):
                return decode_image(self.files[i])

        @hookimpl
        def rlcfb_register_datasets():
            return [DatasetSpec(name="folder", version="1", task_kinds=frozenset({"classification"}),
                                build=lambda root: Folder(root), root_name="folder")]
    ''')


@pytest.fixture
def corrupt_tree(tmp_path):
    from PIL import Image

    folder = tmp_path / "data" / "folder"
    folder.mkdir(parents=True)
    for i in range(4):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (60 * i, 20, 200)).save(buf, format="PNG")
        (folder / f"img{i}.png").write_bytes(buf.getvalue())
    (folder / "img2.png").write_bytes((folder / "img2.png").read_bytes()[:30])  # truncated mid-file
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "folder.py").write_text(folder_dataset_plugin(tmp_path / "data"))
    return tmp_path


def test_data_check_decodes_every_image(corrupt_tree, capsys):
    base = ["data", "check", "folder", *PLUGINS, "-p", "rlcf_bench_datasets", "--plugins-dir",
            str(corrupt_tree / "plug"), "--data-root", str(corrupt_tree / "data")]
    code, err = cli(base, capsys)
    assert code == 1 and "img2.png" in err and "1 image(s) cannot be decoded" in err
    code, _ = cli([*base, "--quick"], capsys)
    assert code == 0


def test_a_corrupt_image_fails_naming_the_file_or_is_skipped_and_counted(corrupt_tree, capsys):
    db = corrupt_tree / "lb.sqlite"
    args = ["run", *PLUGINS, "--plugins-dir", str(corrupt_tree / "plug"), "--task", "classification", "--dataset",
            "folder", "--method", "zero-shot", "--model", "tiny-clip", "--data-root", str(corrupt_tree / "data"),
            "--device", "cpu", "-q", "--batch-size", "2", "--db", str(db)]
    code, err = cli(args, capsys)
    assert code == 1 and "img2.png" in one_line_error(err) and "cannot be decoded" in err
    code, err = cli([*args, "--on-corrupt", "skip"], capsys)
    assert code == 0, err
    from rlcf_bench.store import Store

    store = Store(str(db))
    (run,) = store.runs()
    assert run.n_done == 4 and len(store.sample_records(run.id)) == 3
    skipped = [r for r in store.sample_records(run.id, include_skipped=True) if "skipped" in r.extra]
    assert [r.sample_id for r in skipped] == ["img2.png"] and "img2.png" in skipped[0].extra["skipped"]
    assert store.metrics_of(run.id)["skipped"].value == 1


# ------------------------------------------------------------------ 2. never fail another's run
def test_a_process_never_marks_another_live_process_run_failed(store, runner):
    from rlcf_bench.runner import RunRequest
    from rlcf_bench.store import Store

    result = runner.run(RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip",
                                   protocol_overrides=(("limit", 2),)))
    other = Store(store.url)
    assert other.fail_run(result.run_id, "failed", "boom") is False  # finished: untouched
    assert store.get_run(result.run_id).status == "finished"
    run, _ = store.open_run(result.spec, kind="classification", n_total=3, provenance={}, plugins=[],
                            device_name="cpu", official=False, fresh=True)
    assert store.claim(run.id, ["a", "b", "c"], 2) == ["a", "b"]  # this process (alive) works on a, b
    assert other.claim(run.id, ["a", "b", "c"], 2) == ["c"]  # the other gets what is left
    other.release_claims(run.id)
    assert other.fail_run(run.id, "failed", "boom") is False  # a live owner still holds a claim
    assert store.get_run(run.id).status == "running"


def test_claims_of_a_dead_owner_are_taken_over(store):
    from rlcf_bench.store import Claim

    run_id = store.open_run(_spec(), kind="classification", n_total=2, provenance={}, plugins=[],
                            device_name="cpu", official=False)[0].id
    with store._session.begin() as s:
        s.add(Claim(run_id=run_id, sample_id="a", owner=f"{os.uname().nodename}:999999999:dead"))
    assert store.claim(run_id, ["a", "b"], None) == ["a", "b"]


def _spec():
    from rlcf_bench.types import RunProtocol, RunSpec

    return RunSpec(task="classification", task_version="1", dataset="d", dataset_version="1", dataset_params={},
                   method="m", method_version="1", method_config={}, model="x", model_version="1", reward_model=None,
                   protocol=RunProtocol(), seed=0, device="cpu", bench_version="0")


# ------------------------------------------------------------------ 9. interrupts and dead parents
from test_runner import SLOW_METHOD as SLOW  # noqa: E402 - tests/host is on sys.path (no package)
from test_runner import _count as _stored  # noqa: E402


def _interruptible() -> None:
    """In the child before exec: SIGINT at its default disposition. A test run started as a
    background job of a non-interactive shell (``bash .ci/run &``) inherits SIGINT *ignored*,
    and Python then installs no KeyboardInterrupt handler: Ctrl-C is off for the whole run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signals_mark_the_run_interrupted_and_say_how_to_resume(tmp_path, sig, code):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "slow.py").write_text(SLOW)
    db = tmp_path / "lb.sqlite"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RLCF_BENCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlcf_bench", *RUN, "--plugins-dir", str(tmp_path / "plug"),
                             "--method", "slow-zero-shot", "--batch-size", "1", "--data-param", "n=400", "--db", str(db)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)
    deadline = time.time() + 120
    while _stored(db) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "resume with: rlcf-bench run" in err, err
    con = sqlite3.connect(db)
    status, error = con.execute("select status, error from runs").fetchone()
    con.close()
    assert status == "interrupted" and "resume with" in error


WATCHED_CHILD = """
import multiprocessing as mp, sys, time

def child():
    from rlcf_bench.workers import exit_with_parent
    exit_with_parent(poll_s=0.1)
    time.sleep(600)

if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=child)
    p.start()
    print(p.pid, flush=True)
    time.sleep(600)
"""


def test_a_worker_exits_when_its_parent_dies(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(WATCHED_CHILD)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child has installed its watchdog
    os.kill(child, 0)  # alive while its parent is
    parent.kill()
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        try:  # reaped by init, or a zombie of ours
            with open(f"/proc/{child}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its parent")
