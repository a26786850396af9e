"""The shared frozen view-feature cache: a sample's view features are computed once per invocation.

The protocol fixes a sample's views (seeded by the protocol seed and the sample id) and every
method that does not tune the image tower encodes them with the same frozen tower, so the features
of (model and its weights, dataset and sample, view protocol) are the same for zero-shot-style
methods, prompt tuners and online methods, and for every stream order. ``rlcf-bench run`` gives
its runs (and its ``-j`` workers) one cache folder; the first run that needs a sample's features
computes them and every other run reads them (``docs/view-cache.md``).

* **Key** — :func:`run_key` hashes everything the features depend on: the policy model's name,
  weights version, input size and normalisation; the task and its version; the dataset, its
  version and parameters; the protocol without what only orders or cuts the stream (``limit``,
  ``order``, ``order_seed``); the device type; :data:`FORMAT`. An entry's key is that hash with
  the sample id. New weights are a new key: an entry is never served for other weights.
* **Deterministic entries** — an entry is always computed from ONE sample, its V views in one
  forward, whichever method or batch asks first, so what a run reads never depends on which run
  computed it. (Batching the views of several samples gives the same bits on the CPU kernels
  this project runs; ``tests/host/test_view_cache.py`` checks it against the uncached path.)
* **Concurrency** — an entry is written to a temporary file in its folder and renamed into place
  (atomic on POSIX): a reader sees a whole entry or none; two workers computing the same entry
  write identical bits, the last rename wins.
* **Honest latency** — an entry stores how long generating and encoding its views took. A run
  served from the cache is credited that time (:meth:`rlcf_bench.device.SectionTimer.credit`,
  section ``views``), which the runner adds to the sample's adapt time: a method reports the
  latency it would have had alone.
* **CPU only** — the runner installs it for CPU runs (where encoding dominates and the equality is
  tested); on CUDA every run encodes its own views, as before.
* **Bounded** — the folder belongs to one invocation and is deleted when it ends
  (:func:`invocation_cache`; the folder of an invocation killed outright is removed by the next
  one); an entry is V × E × 4 bytes (32 views × 64 dims: 8 KiB).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .lazy import LazyModule
from .types import stable_hash

if TYPE_CHECKING:  # pragma: no cover
    from .device import SectionTimer
    from .types import Batch, MethodContext, RunSpec

torch: Any = LazyModule("torch")

#: Bump when the way view features are computed or stored changes (part of every key).
FORMAT = "2"
#: ``ctx.cache`` key under which the runner puts the run's :class:`RunViewFeatures`.
CONTEXT_KEY = "view_features"
#: Environment switch: ``RLCF_BENCH_FEATURE_CACHE=0`` disables the cache (as ``--no-feature-cache``).
ENV_SWITCH = "RLCF_BENCH_FEATURE_CACHE"
#: Protocol fields and parameters that only order or cut the stream: they never change a view.
STREAM_ONLY = frozenset({"limit", "order"})
STREAM_ONLY_PARAMS = frozenset({"order_seed", "stream", "online_batch"})


def enabled_by_env() -> bool:
    """False when ``RLCF_BENCH_FEATURE_CACHE`` is ``0``/``false``/``off``/``no``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "off", "no"}


def run_key(spec: RunSpec, model: Any) -> str:
    """The part of an entry's key shared by every sample of a run (module docstring)."""
    protocol = {k: v for k, v in spec.protocol.as_dict().items() if k not in STREAM_ONLY}
    protocol["params"] = {k: v for k, v in protocol["params"].items() if k not in STREAM_ONLY_PARAMS}
    return stable_hash({
        "format": FORMAT, "model": spec.model, "model_version": spec.model_version,
        "image_size": int(model.image_size), "mean": list(model.mean), "std": list(model.std),
        "task": spec.task, "task_version": spec.task_version, "dataset": spec.dataset,
        "dataset_version": spec.dataset_version, "dataset_params": spec.dataset_params,
        "protocol": protocol, "device": spec.device,
    }, length=32)


@dataclass(frozen=True)
class Entry:
    """One sample's L2-normalised fp32 view features ``[V, E]`` and the milliseconds it took to
    generate and encode its views when it was computed. ``splits``: the widths of the members'
    features concatenated along the last axis (a reward ensemble's, :func:`reward_view_features`);
    empty for one model."""

    features: torch.Tensor
    ms: float
    splits: tuple[int, ...] = ()


class FeatureStore:
    """Entries as safetensors files under ``root`` (``<key[:2]>/<key>.safetensors``: the features,
    their time and the members' widths as three tensors). Every run reads each of its samples'
    entries, so reading is on the suite's per-sample path: safetensors parses a JSON header and
    copies the bytes (about 50 µs for an entry) where ``torch.load(weights_only=True)`` unpickles a
    zip archive (about 420 µs; ``tests/bench/test_bench_view_cache.py``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> Entry | None:
        """The entry, or None when there is none (or it cannot be read: it is then recomputed)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            data = load(self.path(key).read_bytes())
            return Entry(data["features"], float(data["ms"]), tuple(int(k) for k in data["splits"].tolist()))
        except (OSError, KeyError, ValueError, SafetensorError):
            return None

    def put(self, key: str, entry: Entry) -> None:
        """Atomic: written to a temporary file of the same folder, then renamed into place. A
        cache that cannot be written (disk full, folder removed) is skipped, never fatal."""
        from safetensors.torch import save

        path = self.path(key)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
            with os.fdopen(fd, "wb") as fh:
                fh.write(save({"features": entry.features.detach().cpu().contiguous(),
                               "ms": torch.tensor([float(entry.ms)], dtype=torch.float64),
                               "splits": torch.tensor(list(entry.splits), dtype=torch.int64)}))
            os.replace(tmp, path)
            tmp = None
        except OSError:
            pass
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


class RunViewFeatures:
    """The cache as one run sees it: entries of its samples, computed on a miss, credited to the
    run's timer on a hit."""

    def __init__(self, store: FeatureStore, prefix: str, timer: SectionTimer) -> None:
        self.store = store
        self.prefix = prefix
        self.timer = timer
        self.hits = 0
        self.misses = 0

    def key(self, sample_id: str) -> str:
        return stable_hash([self.prefix, sample_id], length=32)

    def __call__(self, ctx: MethodContext, batch: Batch) -> torch.Tensor:
        """Features ``[B, V, E]`` of the batch's views (fp32, L2-normalised, no graph)."""
        rows = []
        for row, sample_id in enumerate(batch.sample_ids):
            key = self.key(sample_id)
            entry = self.store.get(key)
            if entry is None:
                entry = self.compute(ctx, batch, row)
                self.store.put(key, entry)
                self.misses += 1
            else:
                self.timer.credit("views", entry.ms)
                self.hits += 1
            rows.append(entry.features.to(ctx.device))
        return torch.stack(rows)

    def compute(self, ctx: MethodContext, batch: Batch, row: int) -> Entry:
        """One sample's views, generated and encoded alone (the entry's bits never depend on
        its batch), and the time that took (device-synchronised)."""
        clock = self.timer.clock
        start = clock.now()
        views = batch.sample_views(row)
        with torch.no_grad(), ctx.amp.autocast():
            features = ctx.vlm.image_features(views)
        return Entry(features, clock.now() - start)


def reward_view_features(ctx: MethodContext, reward_model: Any, pixels: torch.Tensor,
                         compute: Callable[[torch.Tensor], list[torch.Tensor]]) -> list[torch.Tensor]:
    """The frozen reward model's features of the views ``pixels`` ``[B, N, 3, S, S]`` (one list
    entry per member, ``[B, N, D_j]``), shared by the runs of the invocation.

    The methods that tune the image tower select their confident views under the same frozen
    policy and adapt the same batches, so RLCF and the distillation baselines ask the reward model
    (their teacher) for the features of the same views. An entry holds one call's features, keyed
    by the views' bytes (and the reward model's name and its members' weights versions, the policy
    normalisation it converts from, precision and device): it is served only for identical input, and it is what this call would
    compute (one forward of all B·N views), so results are the same bits with and without the
    cache. A hit is credited the entry's time in the ``reward`` section
    (``docs/view-cache.md#reward-features``). ``compute`` is the uncached computation (views →
    per-member ``[B, N, D_j]``); it runs alone without the invocation's cache (GPU runs,
    ``--no-feature-cache``)."""
    import hashlib

    shared = ctx.cache.get(CONTEXT_KEY)
    if not isinstance(shared, RunViewFeatures):
        return compute(pixels)
    x = pixels.detach().cpu().contiguous()
    weights = [str(getattr(m, "version", "")) for m in getattr(reward_model, "members", ())]  # new weights: new key
    key = stable_hash([FORMAT, "reward-views", reward_model.name, weights, list(getattr(reward_model, "policy_mean", ())),
                       list(getattr(reward_model, "policy_std", ())), str(ctx.amp.dtype), bool(ctx.amp.enabled),
                       ctx.device.type, list(x.shape), str(x.dtype),
                       hashlib.blake2b(x.numpy().tobytes(), digest_size=16).hexdigest()], length=32)
    entry = shared.store.get(key)
    if entry is None:
        start = shared.timer.clock.now()
        members = compute(pixels)
        entry = Entry(torch.cat(members, dim=-1), shared.timer.clock.now() - start,
                      tuple(int(f.shape[-1]) for f in members))
        shared.store.put(key, entry)
    else:
        shared.timer.credit("reward", entry.ms)
    return list(entry.features.to(ctx.device).split(list(entry.splits), dim=-1))


FOLDER_PREFIX = "rlcf-bench-views-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphans(parent: str | None = None) -> list[str]:
    """Remove the cache folders of invocations that were killed before they could clean up (their
    folder names their process id, which no longer exists). Returns the folders removed."""
    import shutil

    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


@contextlib.contextmanager
def invocation_cache(enabled: bool = True) -> Iterator[str | None]:
    """A fresh cache folder for one invocation (removed with everything in it when the
    invocation ends; a killed invocation's folder is removed by the next one,
    :func:`remove_orphans`), or None when the cache is off (``enabled`` False or the environment
    switch)."""
    if not (enabled and enabled_by_env()):
        yield None
        return
    remove_orphans()
    with tempfile.TemporaryDirectory(prefix=f"{FOLDER_PREFIX}{os.getpid()}-") as root:
        yield root
