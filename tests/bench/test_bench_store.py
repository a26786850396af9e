"""pytest-benchmark timings of storing a stream's results: one transaction per sample (what a
stream did before ``ExecutionOptions.stream_flush``) against one per 16 samples (the default),
on a file-backed SQLite store with the stream's claims held, as in a runner process
(``docs/concurrency.md#streams``, ``docs/performance.md#stream-stores``). Timed run::

    .venv/bin/pytest tests/bench/test_bench_store.py --benchmark-enable -s

The benchmark's time is for 160 samples; ms/sample is printed and stored in ``extra_info``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

SAMPLES = 160


@pytest.mark.benchmark
@pytest.mark.parametrize("per_store", (1, 16))
def test_bench_stream_store(benchmark: Any, tmp_path: Any, per_store: int) -> None:
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import ExecutedBatch, Store
    from rlcf_bench.types import SampleRecord

    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    runner = Runner(PluginHost(), store,
                    ExecutionOptions(device="cpu"))
    spec = runner.prepare(RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip"))[0]
    attempts = itertools.count()

    def one_stream() -> int:
        run, _ = store.open_run(spec, kind="classification", n_total=SAMPLES, provenance={}, plugins=[],
                                device_name="cpu", official=False, fresh=next(attempts) > 0)
        ids = [f"s{i:05d}" for i in range(SAMPLES)]
        assert store.claim(run.id, ids, None) == ids  # a stream claims the rest of its run
        batches = [ExecutedBatch((SampleRecord(sid, i, 1, 1, 1.0, {"confidence": 0.5, "top5": True}),),
                                 2.0, 1.0, None, False) for i, sid in enumerate(ids)]
        n_done = 0
        for k in range(0, SAMPLES, per_store):
            n_done = store.add_executed(run.id, batches[k:k + per_store])
        return n_done

    n_done = benchmark.pedantic(one_stream, rounds=5 if benchmark.enabled else 1, iterations=1)
    assert n_done == SAMPLES
    if benchmark.enabled:
        per_sample = benchmark.stats.stats.median * 1000 / SAMPLES
        benchmark.extra_info["ms_per_sample"] = round(per_sample, 3)
        print(f"\nstream stored every {per_store} sample(s): {per_sample:.2f} ms/sample (median)")
