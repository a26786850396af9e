"""The shared frozen view-feature cache (rlcf_bench/view_cache.py, docs/view-cache.md): keys, atomic
entries, results bit-identical with and without it, concurrent workers, honest latency."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
from rlcf_bench.store import Store
from rlcf_bench.view_cache import Entry, FeatureStore, RunViewFeatures, invocation_cache, run_key

CACHED_METHODS = ("zero", "mta", "tda", "dmn-zs", "dpe", "boostadapter", "tpt-prompt", "c-tpt", "r-tpt", "tps",
                  "rlcf-prompt", "confident-view-ensemble", "tpt-image", "rlcf-image", "kd")
PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_fixtures", "rlcf_bench_models",
           "rlcf_bench_micro", "rlcf_bench_example.confident_view_ensemble")


@pytest.fixture
def full_host():
    from rlcf_bench.plugins import PluginHost

    return PluginHost(autoload=False, extra=list(PLUGINS))


def request(method: str, *, dataset: str = "tiny-colors", model: str = "tiny-clip", limit: int = 6,
            views: int = 16, order_seed: int | None = None, params: tuple = ()) -> RunRequest:
    over: tuple = (("limit", limit), ("n_views", views))
    if order_seed is not None:
        over += (("order_seed", order_seed),)
    reward = model if method in {"rlcf-prompt", "rlcf-image", "kd"} else None
    return RunRequest("classification", dataset, method, model, reward, dataset_params=params, protocol_overrides=over)


def outcome(store: Store, run_id: int) -> dict[str, tuple]:
    """Per sample: prediction and the stored confidence (a float of the output distribution)."""
    return {r.sample_id: (r.prediction, r.score, r.extra.get("confidence")) for r in store.sample_records(run_id)}


def run_all(host, tmp_path: Path, name: str, reqs, cache: str | None) -> list[dict[str, tuple]]:
    store = Store(f"sqlite:///{tmp_path / f'{name}.sqlite'}")
    runner = Runner(host, store, ExecutionOptions(device="cpu", feature_cache=cache))
    return [outcome(store, runner.run(r).run_id) for r in reqs]


# ------------------------------------------------------------------------------------ entries


def test_entries_round_trip_exactly_atomically_and_a_missing_entry_is_a_miss(tmp_path):
    fs = FeatureStore(tmp_path)
    assert fs.get("ab" * 16) is None
    feats = torch.randn(7, 5)
    fs.put("ab" * 16, Entry(feats, 12.5))
    got = fs.get("ab" * 16)
    assert got is not None and torch.equal(got.features, feats) and got.ms == 12.5
    assert [p.name for p in (tmp_path / "ab").iterdir()] == ["ab" * 16 + ".safetensors"]  # no temporary file left
    fs.put("cd" * 16, Entry(feats, 3.0, (2, 3)))
    split = fs.get("cd" * 16)
    assert split is not None and split.splits == (2, 3) and split.ms == 3.0 and torch.equal(split.features, feats)
    fs.path("cd" * 16).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")  # damaged: a miss, recomputed
    assert fs.get("cd" * 16) is None
    fs.path("cd" * 16).write_bytes(b"")
    assert fs.get("cd" * 16) is None


def test_an_unwritable_cache_is_skipped_not_fatal(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    FeatureStore(blocker).put("cd" * 16, Entry(torch.zeros(2, 2), 1.0))  # its folder cannot be created
    assert FeatureStore(blocker).get("cd" * 16) is None


def _hammer(root: str, key: str, value: float, n: int) -> None:
    fs = FeatureStore(root)
    for _ in range(n):
        fs.put(key, Entry(torch.full((32, 64), value), value))


def test_concurrent_writers_of_one_entry_leave_a_whole_entry_for_every_reader(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    key = "ef" * 16
    writers = [ctx.Process(target=_hammer, args=(str(tmp_path), key, float(v), 40)) for v in (1, 2)]
    for w in writers:
        w.start()
    fs, seen = FeatureStore(tmp_path), 0
    while any(w.is_alive() for w in writers) or seen == 0:
        entry = fs.get(key)
        if entry is not None:  # whole: every value and the time are one writer's
            assert entry.features.shape == (32, 64) and float(entry.features.min()) == float(entry.features.max()) == entry.ms
            seen += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert not [p for p in (tmp_path / key[:2]).iterdir() if p.name.startswith(".tmp-")]


def test_the_invocation_cache_is_removed_at_the_end_and_can_be_switched_off(monkeypatch):
    with invocation_cache() as root:
        assert root is not None and os.path.isdir(root)
        FeatureStore(root).put("aa" * 16, Entry(torch.zeros(1), 1.0))
    assert not os.path.exists(root)
    with invocation_cache(enabled=False) as off:
        assert off is None
    monkeypatch.setenv("RLCF_BENCH_FEATURE_CACHE", "0")
    with invocation_cache() as off:
        assert off is None


def test_the_folder_of_a_killed_invocation_is_removed_by_the_next_one(tmp_path):
    import subprocess
    import sys

    from rlcf_bench.view_cache import FOLDER_PREFIX, remove_orphans

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{FOLDER_PREFIX}{int(dead.stdout)}-abc"
    (orphan / "ab").mkdir(parents=True)
    live = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-def"
    live.mkdir()
    assert remove_orphans(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists() and live.exists()


# ------------------------------------------------------------------------------------ keys


def test_the_key_holds_what_the_features_depend_on_and_not_the_stream_order(full_host):
    runner = Runner(full_host, Store("sqlite://"), ExecutionOptions(device="cpu"))
    model = runner.session.model("tiny-clip")

    def key(req: RunRequest, **spec_changes) -> str:
        spec = runner.prepare(req)[0]
        return run_key(dataclasses.replace(spec, **{"model_version": "seed0", **spec_changes}), model)

    base = key(request("tda"))
    assert key(request("tda", order_seed=2)) == base  # orders share the features
    assert key(request("zero", limit=3)) == base  # so do methods and limits
    assert key(request("tda", views=8)) != base
    assert key(request("tda"), model_version="other-weights") != base  # never served for other weights
    assert key(request("tda"), dataset_version="2") != base
    assert key(request("tda", params=(("n", 8),))) != base
    seeded = runner.prepare(request("tda"))[0]
    assert key(request("tda"), protocol=seeded.protocol.replace(seed=1)) != base
    assert key(request("tda"), protocol=seeded.protocol.replace(precision="amp-bf16")) != base


# ------------------------------------------------------------------------------------ results


#: One method of each way of reading the features (frozen views, online summary, prompt tuner,
#: prompt tuner whose objective also reads pixels, the example plugin, image-tower tuner: its
#: selection forward under θ_clip).
FAMILIES = ("zero", "tda", "tpt-prompt", "rlcf-prompt", "confident-view-ensemble", "tpt-image")


@pytest.mark.parametrize("dataset,model,views,methods", [("tiny-colors", "tiny-clip", 16, CACHED_METHODS),
                                                         ("micro-hard", "micro-student", 32, FAMILIES)])
def test_results_are_bit_identical_with_and_without_the_cache(full_host, tmp_path, dataset, model, views, methods):
    """Methods that read cached features, online ones in two orders, episodic ones batched by 4
    (uncached, a batch's features come from one forward of 4 samples; cached, from one sample):
    per-sample predictions and output probabilities are the same bits, on the tiny fixture and
    on the embedded suite's student."""
    params = (("n", 8),) if dataset.startswith("micro") else ()
    reqs = [request(m, dataset=dataset, model=model, views=views, params=params) for m in methods]
    reqs += [request(m, dataset=dataset, model=model, views=views, params=params, order_seed=1)
             for m in ("tda", "dpe") if m in methods]
    plain = run_all(full_host, tmp_path, "plain", reqs, None)
    root = tmp_path / "cache"
    cached = run_all(full_host, tmp_path, "cached", reqs, str(root))
    for req, a, b in zip(reqs, plain, cached):
        assert a == b, req.describe()
    entries = [FeatureStore(root).get(p.stem) for p in root.glob("*/*.safetensors")]
    assert all(e is not None for e in entries)
    assert sum(1 for e in entries if e and not e.splits) == 6  # one view entry per sample, shared by every run
    if {"rlcf-image", "kd"} <= set(methods):  # and reward entries (one per batch) for the image tuners' selection
        from rlcf_bench.runner import DEFAULT_BATCH_SIZE

        assert sum(1 for e in entries if e and e.splits) == -(-6 // DEFAULT_BATCH_SIZE)


def test_the_image_tuners_share_the_reward_models_view_features(full_host, tmp_path, monkeypatch):
    """rlcf-image computes the reward model's features of each batch's selected views; kd (the
    same selection under the frozen policy, the same batches) reads them all, is credited their
    time, and stores what it stores without the cache."""
    from rlcf_bench.tta.reward import CLIPReward

    calls: list[int] = []
    features = CLIPReward.image_features

    def counted(self, images):
        calls.append(len(images))
        return features(self, images)

    monkeypatch.setattr(CLIPReward, "image_features", counted)
    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    runner = Runner(full_host, store, ExecutionOptions(device="cpu", feature_cache=str(tmp_path / "cache"),
                                                       batch_size=3))
    runner.run(request("rlcf-image"))
    assert len(calls) == 2  # two batches of 3 samples
    kd = runner.run(request("kd"))
    assert len(calls) == 2  # every entry read, none computed again
    assert all((r.reward_ms or 0) > 0 for r in store.sample_rows(kd.run_id))  # credited, not free
    plain = Store(f"sqlite:///{tmp_path / 'plain.sqlite'}")
    uncached = Runner(full_host, plain, ExecutionOptions(device="cpu", batch_size=3)).run(request("kd"))
    assert outcome(store, kd.run_id) == outcome(plain, uncached.run_id)


def test_hits_are_credited_with_the_time_the_entry_took(full_host, tmp_path):
    """A run served from the cache reports the view cost of its entries, measured when computed."""
    root = tmp_path / "cache"
    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    runner = Runner(full_host, store, ExecutionOptions(device="cpu", feature_cache=str(root), batch_size=2))
    first = runner.run(request("zero"))
    entries = sorted(root.glob("*/*.safetensors"))
    assert len(entries) == 6
    for path in entries:  # rewrite every entry with a known cost
        data = FeatureStore(root).get(path.stem)
        assert data is not None
        FeatureStore(root).put(path.stem, Entry(data.features, 5000.0))
    again = runner.run(request("mta"))
    rows = store.sample_rows(again.run_id)
    assert all(r.adapt_ms >= 5000.0 for r in rows)  # each sample carries its own entry's cost
    assert all(r.adapt_ms < 5000.0 for r in store.sample_rows(first.run_id))  # computed: its real time
    assert again.latency is not None and again.latency.adapt_ms_mean >= 5000.0


def test_a_miss_counts_the_real_time_and_a_hit_only_the_credit(full_host, tmp_path):
    from rlcf_bench.device import SectionTimer

    runner = Runner(full_host, Store("sqlite://"), ExecutionOptions(device="cpu"))
    spec, task_spec, ds_spec, _ = runner.prepare(request("zero"))
    model = runner.session.model("tiny-clip")
    task = task_spec.build(runner.session.dataset(ds_spec, {}), spec.protocol)
    batch = task.make_batch(task.samples()[:3], model, runner.device)
    timer = SectionTimer(runner.device)
    shared = RunViewFeatures(FeatureStore(tmp_path), "prefix", timer)

    from rlcf_bench.device import AmpHelper
    from rlcf_bench.types import MethodContext

    ctx = MethodContext(task="classification", protocol=spec.protocol, device=runner.device,
                        amp=AmpHelper(runner.device, "fp32"), model=model)
    first = shared(ctx, batch)
    assert (shared.misses, shared.hits, timer.credited_ms) == (3, 0, 0.0)
    second = shared(ctx, task.make_batch(task.samples()[:3], model, runner.device))
    assert torch.equal(first, second) and shared.hits == 3
    stored = sum(FeatureStore(tmp_path).get(shared.key(s)).ms for s in batch.sample_ids)
    assert timer.credited_ms == pytest.approx(stored) and timer.totals["views"] == pytest.approx(stored)
    timer.reset()
    assert timer.credited_ms == 0.0
    # a sample's features are its own views through the policy, as the uncached path computes them
    with torch.no_grad():
        assert torch.equal(first[1], model.image_features(batch.views[1]))


def test_a_reward_entry_is_served_only_to_the_same_weights_and_views(tmp_path):
    """Reward-feature entries are keyed by the reward model's name, its members' weights versions
    and the views' bytes: another version or other pixels are a miss, the same ones a hit."""
    from types import SimpleNamespace

    from rlcf_bench.device import AmpHelper, SectionTimer
    from rlcf_bench.view_cache import CONTEXT_KEY, reward_view_features

    device = torch.device("cpu")
    ctx = SimpleNamespace(cache={}, amp=AmpHelper(device, "fp32"), device=device)
    ctx.cache[CONTEXT_KEY] = RunViewFeatures(FeatureStore(tmp_path), "prefix", SectionTimer(device))
    calls: list[int] = []

    def compute(views):
        calls.append(len(views))
        return [views.flatten(2).mean(-1, keepdim=True)]  # [B, N, 1]

    def reward(version):
        return SimpleNamespace(name="r", members=[SimpleNamespace(version=version)])

    views = torch.rand(2, 3, 3, 4, 4)
    first = reward_view_features(ctx, reward("v1"), views, compute)
    assert torch.equal(reward_view_features(ctx, reward("v1"), views, compute)[0], first[0]) and calls == [2]
    reward_view_features(ctx, reward("v2"), views, compute)  # new weights: computed again
    reward_view_features(ctx, reward("v1"), views + 1.0, compute)  # other views: computed again
    assert calls == [2, 2, 2]


@pytest.mark.slow  # two invocations with two spawned workers each
def test_a_parallel_invocation_shares_the_cache_and_matches_an_uncached_one(tmp_path):
    """Two -j workers on one invocation cache give the per-sample results of an uncached run; the
    invocation's cache folder is gone afterwards."""
    import tempfile

    from click.testing import CliRunner

    from rlcf_bench.cli import GlobalOptions, build_cli, build_host

    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = list(PLUGINS)
    cli = build_cli(build_host(opts))
    before = set(Path(tempfile.gettempdir()).glob("rlcf-bench-views-*"))
    args = ["run", "--dataset", "tiny-colors", "--model", "tiny-clip", "--method", "zero", "--method", "tda",
            "--method", "tpt-prompt", "--limit", "6", "--views", "16", "--orders", "2", "-j", "2", "-q"]
    results = []
    for name, extra in (("cached", []), ("plain", ["--no-feature-cache"])):
        db = tmp_path / f"{name}.sqlite"
        res = CliRunner().invoke(cli, [*args, "--db", str(db), *extra], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        store = Store(f"sqlite:///{db}")
        runs = sorted(store.runs(), key=lambda r: (r.method, r.protocol_hash))
        assert len(runs) == 4  # zero, tpt-prompt, tda in two orders
        results.append([(r.method, outcome(store, r.id)) for r in runs])
    assert results[0] == results[1]
    assert set(Path(tempfile.gettempdir()).glob("rlcf-bench-views-*")) == before
