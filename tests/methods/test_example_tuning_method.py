"""The tuning-method guide (docs/writing-a-method.md): its example (docs/examples/norm_entropy.py) tunes, lowers
its objective, leaves the model as it found it, and runs end to end from ``--plugins-dir``."""

from __future__ import annotations

from pathlib import Path

import torch

from rlcf_bench.tta.objectives import gather_views, marginal_entropy, select_confident

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
PLUGINS = ["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models"]


def _method(ctx, **options):
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.types import config_from_pairs

    host = PluginHost(autoload=False, extra=PLUGINS, plugins_dirs=[str(EXAMPLES)])
    spec = host.registry("methods").get("example-norm-entropy")
    method = spec.method_cls(config_from_pairs(spec.config_cls, options))
    method.setup(ctx)
    return method


def test_it_tunes_lowers_its_objective_and_resets_exactly(make_ctx) -> None:
    ctx, task = make_ctx(n_views=8, selection_ratio=0.25)
    method = _method(ctx, steps=3, lr=1e-2)
    assert method.params and all(not p.requires_grad for p in method.params)
    batch = task.make_batch([(0, task.samples()[0][1])], ctx.model, ctx.device)
    initial = [p.detach().clone() for p in method.params]

    def entropy() -> float:
        with torch.no_grad():
            views = batch.views
            logits = method.logits(views.flatten(0, 1)).view(*views.shape[:2], -1)
            return float(marginal_entropy(gather_views(logits, select_confident(logits, ctx.protocol.n_selected))))

    before = entropy()
    method.reset()
    method.adapt(batch)
    assert any(not torch.equal(p, q) for p, q in zip(method.params, initial))  # it moved
    assert entropy() < before  # ... in the direction of its objective
    assert all(not p.requires_grad and p.grad is None for p in method.params)
    method.reset()
    assert all(torch.equal(p, q) for p, q in zip(method.params, initial)) and not method.optimizer.state


def test_reset_is_safe_after_a_setup_that_did_not_finish(make_ctx) -> None:
    ctx, _ = make_ctx()
    method = _method(ctx)
    fresh = type(method)(method.config)  # as if setup() had raised before building anything
    fresh.reset()


def test_it_runs_from_plugins_dir(tmp_path: Path) -> None:
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    host = PluginHost(autoload=False, extra=PLUGINS, plugins_dirs=[str(EXAMPLES)])
    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    req = RunRequest(task="classification", dataset="tiny-colors", method="example-norm-entropy", model="tiny-clip",
                     method_options=(("steps", "2"),), protocol_overrides=(("limit", 4), ("n_views", 8)))
    result = Runner(host, store, ExecutionOptions(device="cpu")).run(req)
    assert result.status == "finished" and result.n_samples == 4 and "top1" in result.metrics


def test_the_readme_one_file_example_runs_and_reads_its_option(tmp_path: Path) -> None:
    import re

    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    readme = (EXAMPLES.parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(# my_confident_views\.py\n.*?)```", readme, re.S)
    assert code, "the README's one-file example is missing"
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "my_confident_views.py").write_text(code.group(1))
    host = PluginHost(autoload=False, extra=PLUGINS, plugins_dirs=[str(tmp_path / "plugins")])
    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    runner = Runner(host, store, ExecutionOptions(device="cpu"))
    confidences = []
    for keep in ("1", "8"):
        req = RunRequest(task="classification", dataset="tiny-colors", method="my-confident-views", model="tiny-clip",
                         method_options=(("n_keep", keep),), protocol_overrides=(("limit", 4), ("n_views", 8)))
        result = runner.run(req)
        assert result.status == "finished" and result.n_samples == 4
        confidences.append([r.extra.get("confidence") for r in store.sample_records(result.run_id)])
    assert confidences[0] != confidences[1]  # the option is read: one view vs the mean of all eight
