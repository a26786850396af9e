"""What the recording scripts of the online methods share (TDA, DMN-ZS, DPE, BoostAdapter).

The official code of these methods works on CLIP features, so it is driven on fixed, seeded
features instead of images: a fake CLIP whose ``encode_image`` returns recorded per-view features
(the "images" it receives are view ids), and class text features given directly. The official
loop function itself is run (``run_test_tda``, ``run_test_dpe``, ``direct_inference``), on CPU in
fp32; the state after every sample is read from the loop's own locals by a tracer that fires at
the loop header (:class:`LoopSnapshots`).

What the recording changes in the official code's environment, and why (nothing algorithmic):

* ``Tensor.cuda`` / ``Module.cuda`` return the object itself (no GPU here);
* ``wandb`` (logging) and ``sklearn.manifold`` (a t-SNE plot) are stubbed modules;
* ``Tensor.half()`` casts to fp32 instead (:func:`no_half`): the official code casts its one-hot
  and mask cache values to fp16, exact in any float dtype, and then multiplies them with fp32
  affinities, which CPU matmul refuses. DPE's fp16 residuals are restored explicitly where the
  recording wants them (``record_dpe.py``).

Extra packages the official code imports (install with ``pip install --target DIR`` and put DIR
on ``PYTHONPATH``): ``info-nce-pytorch`` (DPE's loss), ``loguru``, ``einops``, ``ipdb``
(BoostAdapter, DMN), ``gdown`` (the datasets packages), ``setuptools<81`` (``pkg_resources``, DMN).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import inspect
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "parity" / "golden"

#: The stream every online recording uses (small enough for a golden file of kilobytes).
N_SAMPLES, N_VIEWS, N_CLASSES, DIM = 64, 20, 8, 12
LOGIT_SCALE = 100.0
SPREAD = 0.05  # the class-dependent part of a feature, relative to the shared anchor


def parse_args(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="a git checkout of the official repository")
    parser.add_argument("--allow-other-commit", action="store_true",
                        help="run on a checkout at another commit and print how its outputs differ from the "
                             "golden file, without recording")
    parser.add_argument("--out", type=Path, default=None, help="golden file to write (default: tests/parity/golden/)")
    return parser.parse_args()


def official_commit(checkout: Path, pinned: str, allow_other: bool) -> tuple[str, bool]:
    """(commit of the checkout, whether a golden file may be written). Refuses another commit
    than ``pinned`` unless ``allow_other`` (then nothing is written)."""
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True, capture_output=True,
                                text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"{checkout}: not a git checkout of the official repository ({err})")
    if commit != pinned:
        if not allow_other:
            sys.exit(f"{checkout} is at {commit}, the golden file is pinned to {pinned} "
                     "(--allow-other-commit to run it without recording)")
        print(f"note: {commit} is not the pinned {pinned}: nothing will be written")
        return commit, False
    return commit, True


def _stub(name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module


def import_official(checkout: Path, module: str) -> Any:
    """Import ``module`` from the checkout, with the CPU environment of the module docstring."""
    _stub("wandb", log=lambda *a, **k: None, init=lambda *a, **k: None)
    _stub("sklearn")
    _stub("sklearn.manifold", TSNE=None)
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.path.insert(0, str(checkout.resolve()))
    return importlib.import_module(module)


@contextlib.contextmanager
def no_half() -> Iterator[None]:
    original = torch.Tensor.half
    torch.Tensor.half = lambda self, *a, **k: self.float()  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.half = original  # type: ignore[method-assign]


def make_stream(seed: int) -> dict[str, torch.Tensor]:
    """Seeded class text features ``text`` [C, d] (unit rows) and raw (unnormalised) per-view image
    features ``views`` [N, V, d], view 0 the "centre view", ``labels`` [N].

    Each sample leans towards its class's text feature with a strength drawn per sample, and its
    views add noise of a scale drawn per view, so the stream mixes confident samples (caches,
    DPE's text update) with moderately uncertain ones (TDA's negative-cache gate)."""
    g = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(N_CLASSES, DIM, generator=g), dim=-1)
    labels = torch.randint(N_CLASSES, (N_SAMPLES,), generator=g)
    # a direction orthogonal to every class feature, shared by all images: it keeps the logit gaps
    # between classes CLIP-like (a few units at scale 100) instead of tens
    anchor = torch.randn(DIM, generator=g)
    q, _ = torch.linalg.qr(text.t())
    anchor = F.normalize(anchor - q @ (q.t() @ anchor), dim=0)
    strength = 0.2 + 0.8 * torch.rand(N_SAMPLES, 1, 1, generator=g)
    noise = 0.05 + 0.3 * torch.rand(N_SAMPLES, N_VIEWS, 1, generator=g)
    base = 0.4 * torch.randn(N_SAMPLES, 1, DIM, generator=g)  # what the views of one sample share
    signal = strength * text[labels].unsqueeze(1) + base + noise * torch.randn(N_SAMPLES, N_VIEWS, DIM, generator=g)
    views = anchor + SPREAD * signal
    return {"text": text, "views": views, "labels": labels}


class FakeCLIP(torch.nn.Module):
    """The official code's CLIP, as far as these loops use it: ``encode_image`` of "images" that
    are view ids ([B, 1] float tensors) returns the recorded raw features of those views;
    ``tokens`` adds the token axis DMN's ``get_image_features`` expects ([B, 1, d])."""

    def __init__(self, views: torch.Tensor, tokens: bool = False) -> None:
        super().__init__()
        self.flat = views.reshape(-1, views.shape[-1])
        self.tokens = tokens
        self.logit_scale = torch.nn.Parameter(torch.tensor(LOGIT_SCALE).log())

    def encode_image(self, ids: torch.Tensor) -> torch.Tensor:
        feats = self.flat[ids.reshape(-1).long()].clone()
        return feats.unsqueeze(1) if self.tokens else feats


def loader(n_samples: int, n_views: int, *, as_list: bool = True,
           centre_only: bool = False) -> list[tuple[Any, torch.Tensor]]:
    """What the official data loaders yield for batch size 1: the V views as a list of [1, ...]
    tensors (here view ids; ``as_list=False``: one [V, 1] tensor; ``centre_only``: view 0 alone,
    as a [1, 1] tensor, what the loaders give where they make no views) and the target (unused by
    the algorithms; 0)."""
    batches: list[tuple[Any, torch.Tensor]] = []
    for i in range(n_samples):
        ids = [torch.tensor([[float(i * n_views + v)]]) for v in range(1 if centre_only else n_views)]
        batches.append((ids[0] if centre_only else ids if as_list else torch.cat(ids), torch.tensor([0])))
    return batches


class LoopSnapshots:
    """Call ``fn`` and collect ``snapshot(frame_locals)`` each time its per-sample test loop (the
    last ``for ... (images, target) in enumerate(...)`` line; DMN's few-shot training loop comes
    before it) is entered: before the first sample and
    after every sample, so ``states[k + 1]`` is the state after sample ``k``."""

    LOOP = re.compile(r"^\s*for .*\(images, target\) in enumerate\(")

    def __init__(self, fn: Callable[..., Any], snapshot: Callable[[dict[str, Any]], Any]) -> None:
        lines, start = inspect.getsourcelines(fn)
        hits = [start + k for k, line in enumerate(lines) if self.LOOP.match(line)]
        assert hits, f"no per-sample loop found in {fn.__name__}"
        self.line, self.code, self.snapshot = hits[-1], fn.__code__, snapshot
        self.fn = fn
        self.states: list[Any] = []
        self.final_locals: dict[str, Any] = {}

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == self.line:
            self.states.append(self.snapshot(dict(frame.f_locals)))
        if event == "return":
            self.final_locals = dict(frame.f_locals)
        return self._local

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        return self._local if frame.f_code is self.code else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sys.settrace(self._global)
        try:
            return self.fn(*args, **kwargs)
        finally:
            sys.settrace(None)


def cache_table(cache: dict[int, list[Any]], ident: Callable[[torch.Tensor], int], capacity: int,
                n_classes: int = N_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """An official ``{class: [[feature, entropy, ...], ...]}`` cache as ``(ids, scores)``
    ``[C, capacity]``: per class the sample ids of its entries and their entropies, in the
    cache's own list order, padded with -1 / inf."""
    ids = torch.full((n_classes, capacity), -1, dtype=torch.int16)
    scores = torch.full((n_classes, capacity), float("inf"))
    for cls, items in cache.items():
        assert len(items) <= capacity, f"class {cls} holds {len(items)} > {capacity} entries"
        for slot, item in enumerate(items):
            ids[cls, slot] = ident(item[0])
            scores[cls, slot] = float(item[1])
    return ids, scores


def nearest_id(table: torch.Tensor) -> Callable[[torch.Tensor], int]:
    """Identify a stored key as the row of ``table`` [N, d] it equals (cosine > 1 − 1e-6)."""
    rows = F.normalize(table.double(), dim=-1)

    def ident(key: torch.Tensor) -> int:
        sims = rows @ F.normalize(key.reshape(-1).double(), dim=0)
        best = int(sims.argmax())
        assert float(sims[best]) > 1 - 1e-6, f"a cache key matches no sample (best cosine {float(sims[best])})"
        return best

    return ident


def compare_with_golden(name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Print, per tensor, how this run's outputs differ from the stored golden file."""
    from safetensors.torch import load_file

    stored = load_file(str(GOLDEN / f"{name}.safetensors"))
    for key, value in tensors.items():
        if key not in stored or stored[key].shape != value.shape:
            print(f"{key}: not comparable with the golden file")
            continue
        diff = (value.double() - stored[key].double()).abs().nan_to_num(0.0)
        print(f"{key}: max |Δ| {float(diff.max()):.3g}")


def write_golden(name: str, out: Path | None, tensors: dict[str, torch.Tensor], *, repository: str, commit: str,
                 script: str, inputs: str, may_write: bool = True, **extra: str) -> Path | None:
    """Write the golden file (``may_write``), else only compare with the stored one."""
    from safetensors.torch import save_file

    if not may_write:
        compare_with_golden(name, tensors)
        return None
    path = out or GOLDEN / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"repository": repository, "commit": commit, "script": script, "inputs": inputs, **extra}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")
    return path
