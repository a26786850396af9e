"""pytest-benchmark timings of reading one view-feature cache entry (32 views × 128 dims, the
micro suite's), which every run does for each of its samples: the cache's safetensors entry
against the same data written with ``torch.save`` and read with ``torch.load(weights_only=True)``
(the cache's earlier format; ``docs/view-cache.md``). Timed run::

    .venv/bin/pytest tests/bench/test_bench_view_cache.py --benchmark-enable -s
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

READS = 200


@pytest.mark.benchmark
@pytest.mark.parametrize("kind", ("safetensors", "torch.load"))
def test_bench_view_cache_read(benchmark: Any, tmp_path: Any, kind: str) -> None:
    from rlcf_bench.view_cache import Entry, FeatureStore

    features = torch.randn(32, 128)
    store = FeatureStore(tmp_path)
    key = "ab" * 16
    store.put(key, Entry(features, 12.5))
    pt = tmp_path / "entry.pt"
    torch.save({"features": features, "ms": 12.5, "splits": []}, pt)

    def read() -> torch.Tensor:
        for _ in range(READS):
            if kind == "safetensors":
                entry = store.get(key)
                assert entry is not None
                got = entry.features
            else:
                got = torch.load(pt, map_location="cpu", weights_only=True)["features"]
        return got

    got = benchmark.pedantic(read, rounds=5 if benchmark.enabled else 1, iterations=1)
    assert torch.equal(got, features)
    if benchmark.enabled:
        per_read = benchmark.stats.stats.median * 1e6 / READS
        benchmark.extra_info["us_per_read"] = round(per_read, 1)
        print(f"\n{kind}: {per_read:.0f} µs per entry read (median)")
