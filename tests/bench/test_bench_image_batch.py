"""pytest-benchmark timings of image-encoder tuning per sample at batch sizes 1/4/8/16: the micro
suite's student and reward model on ``micro-hard`` (32 views, 1 thread, as a runner process).

Image-tower tuning holds one copy of the tuned tensors per sample and forwards the B samples at
once (``torch.func.vmap``, :class:`rlcf_bench.tta.episode.ImageEncoderTuner`); this measures what that
buys. Marked ``slow``: not in the default run. Timed run::

    .venv/bin/pytest -m slow tests/bench/test_bench_image_batch.py --benchmark-enable -s

The benchmark's time is for 16 samples; ms/sample is printed and stored in ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import pytest

SAMPLES = 16


def _method_and_items(name: str) -> tuple[Any, Any, Any, list[tuple[int, str]]]:
    from rlcf_bench.device import AmpHelper, SectionTimer, bench_device, configure_threads
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest, context_kwargs
    from rlcf_bench.store import Store
    from rlcf_bench.types import MethodContext

    configure_threads()
    runner = Runner(PluginHost(), Store("sqlite://"), ExecutionOptions(device=str(bench_device()), warmup=0))
    req = RunRequest(task="classification", dataset="micro-hard", method=name, model="micro-student",
                     reward_model="micro-reward", protocol_overrides=(("n_views", 32),))
    spec, task_spec, ds_spec, (method_spec, config) = runner.prepare(req)
    task = task_spec.build(runner.session.dataset(ds_spec, {}), spec.protocol)
    policy = runner.session.model("micro-student")
    ctx = MethodContext(task=task_spec.kind, protocol=spec.protocol, device=runner.device,
                        amp=AmpHelper(runner.device, spec.protocol.precision), model=policy,
                        reward_model=runner.session.reward_model("micro-reward", policy), seed=spec.seed,
                        timer=SectionTimer(runner.device), **context_kwargs(task.context_fields(policy, runner.device)))
    method = method_spec.method_cls(config)
    method.setup(ctx)
    return method, ctx, task, task.samples()[:SAMPLES]


@pytest.mark.slow
@pytest.mark.benchmark
@pytest.mark.parametrize("batch_size", (1, 4, 8, 16))
@pytest.mark.parametrize("name", ("tpt-image", "rlcf-image", "kd"))
def test_bench_image_tuning_batch(benchmark: Any, name: str, batch_size: int) -> None:
    method, ctx, task, items = _method_and_items(name)
    batches = [task.make_batch(items[i:i + batch_size], ctx.model, ctx.device) for i in range(0, len(items), batch_size)]

    def run() -> list[Any]:
        out = []
        for batch in batches:
            method.reset()
            method.adapt(batch)
            out.append(method.predict(batch).logits)
        return out

    logits = benchmark.pedantic(run, rounds=3 if benchmark.enabled else 1, iterations=1,
                                warmup_rounds=1 if benchmark.enabled else 0)
    method.reset()
    assert sum(len(x) for x in logits) == SAMPLES
    if benchmark.enabled:
        per_sample = benchmark.stats.stats.min * 1000 / SAMPLES
        benchmark.extra_info["ms_per_sample"] = round(per_sample, 2)
        print(f"\n{name} batch {batch_size}: {per_sample:.1f} ms/sample (min of rounds)")
