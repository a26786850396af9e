"""The store on PostgreSQL: a private cluster on loopback, started by the test (skipped where
PostgreSQL's server binaries or the pg8000 driver are missing)."""

from __future__ import annotations


def test_a_run_is_stored_and_reported_from_postgresql(postgres_url):
    from rlcf_bench import report
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures"])
    store = Store(postgres_url)
    req = RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip", protocol_overrides=(("limit", 6),))
    result = Runner(host, store, ExecutionOptions(device="cpu")).run(req)
    assert result.n_samples == 6 and len(store.done_sample_ids(result.run_id)) == 6
    again = Runner(host, Store(postgres_url), ExecutionOptions(device="cpu")).run(req)
    assert again.run_id == result.run_id  # found and reused, not duplicated
    assert '"method": "zero-shot"' in report.render(store, "json")
