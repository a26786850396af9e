"""The stored peak memory is the method's own (docs/gpu.md#memory): zero-shot measures the same
whether it runs in a fresh process or after an ``rlcf-prompt`` run left its models and freed
buffers in the process — at paper size (open_clip ViT-B-16 policy and reward, random weights;
200 classes, 64 views). Marked ``slow`` (minutes on a CPU). Run directly::

    .venv/bin/python tests/bench/test_memory_own_working_set.py [--after rlcf-prompt]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
CLASSES, VIEWS, LIMIT = 200, 64, 2


def measure(after: str | None = None) -> dict[str, Any]:
    """Zero-shot's stored peak (and its parts), optionally after a run of ``after`` in the same session."""
    sys.path.insert(0, str(HERE))
    from test_measure_rlcf_prompt import ARCH, SyntheticClassification, vitb16_random

    from rlcf_bench import DatasetSpec, ModelSpec, hookimpl
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    model_name, dataset_name = f"{ARCH}-random", f"synthetic-{CLASSES}"

    class _Plugin:
        @hookimpl
        def rlcfb_register_models(self) -> list[ModelSpec]:
            return [ModelSpec(name=model_name, version="random-seed0", load=lambda name, device: vitb16_random(name, device)),
                    ModelSpec(name=model_name + "-reward", version="random-seed0",
                              load=lambda name, device: vitb16_random(name, device))]

        @hookimpl
        def rlcfb_register_datasets(self) -> list[DatasetSpec]:
            return [DatasetSpec(name=dataset_name, version="1", task_kinds=frozenset({"classification"}),
                                build=lambda root=None: SyntheticClassification(CLASSES, n=LIMIT))]

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_models",
                                             _Plugin()])
    store = Store(f"sqlite:///{tempfile.mkdtemp()}/memory.sqlite")
    from rlcf_bench.device import bench_device

    runner = Runner(host, store, ExecutionOptions(device=str(bench_device()), batch_size=LIMIT, warmup=0, fresh=True))
    over = (("n_views", VIEWS), ("limit", LIMIT))
    out: dict[str, Any] = {"after": after}
    if after:
        first = runner.run(RunRequest(task="classification", dataset=dataset_name, method=after, model=model_name,
                                      reward_model=model_name + "-reward", protocol_overrides=over))
        run = store.get_run(first.run_id)
        assert run is not None
        out["first"] = {"method": after, "peak_memory_mb": run.peak_memory_mb, **run.provenance.get("memory", {})}
    result = runner.run(RunRequest(task="classification", dataset=dataset_name, method="zero-shot", model=model_name,
                                   protocol_overrides=over))
    run = store.get_run(result.run_id)
    assert run is not None and run.status == "finished"
    out["zero_shot"] = {"peak_memory_mb": run.peak_memory_mb, "memory_kind": run.memory_kind,
                        **run.provenance.get("memory", {})}
    return out


def _in_a_fresh_process(after: str | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__] + (["--after", after] if after else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_zero_shot_memory_is_the_same_fresh_and_after_an_rlcf_prompt_run() -> None:
    fresh = _in_a_fresh_process(None)
    after = _in_a_fresh_process("rlcf-prompt")
    print("\n" + json.dumps({"fresh": fresh, "after": after}, indent=1))
    a, b = fresh["zero_shot"]["peak_memory_mb"], after["zero_shot"]["peak_memory_mb"]
    assert a > 0 and b > 0
    assert abs(a - b) <= 0.05 * a, f"zero-shot peak {a:.0f} MB fresh vs {b:.0f} MB after rlcf-prompt"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--after", default=None, help="a method run first in the same session")
    print(json.dumps(measure(parser.parse_args().after)))
