"""What the recording scripts of the TPT/RLCF family share (``record_tpt_prompt.py``,
``record_rlcf_prompt.py``, ``record_image_tuning.py``, ...): the pinned official commits, the
tiny inputs, and a harness that runs an official ``test_time_adapt_eval`` loop on a CPU and
captures, per sample, the logits it predicts, the confident views it selected and the tuned state.

The inputs are the same for both code bases and are written into each golden file's metadata
(``inputs``, JSON), from which ``tests/parity`` rebuilds them: the tiny CLIP of
``official_clip.py`` (policy seed 0, reward/teacher seed 1), ``N_SAMPLES`` samples of ``N_VIEWS``
seeded normalised views each (view 0 is the image predicted on), ``CLASSNAMES``. The views are a
fixed seeded tensor, so view generation is out of the comparison.

On a CPU the official loops run as they are: ``torch.cuda.amp.autocast`` and the
``GradScaler`` disable themselves (fp32, unscaled loss), and ``.cuda()`` calls are made the
identity while a loop runs (``cpu_cuda_calls``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import official_clip  # noqa: E402  (a sibling module; tools/parity is not a package)

RLCF = ("https://github.com/mzhaoshuai/RLCF", "0996a5d5bdeea9108c36bd0c5a71bba652945cd4")
TPT = ("https://github.com/azshue/TPT", "63ecbace79694205d7884e63fdc3137a200f0b0e")

N_SAMPLES = 8
N_VIEWS = 64
SELECTION_P = 0.1  # int(64 · 0.1) = 6 confident views, as the paper's protocol
VIEWS_SEED = 4  # chosen so that the zero-shot predictions of view 0 cover four of the five classes
POLICY_SEED = 0
REWARD_SEED = 1
REWARD_ARCH = "tiny-reward"  # the name the official code asks clip.load for (seed REWARD_SEED)
#: RLCF-S: the architectures the official ``CLIPRewardsMultiple`` loads, each a tiny CLIP of its own seed
ENSEMBLE = (("ViT-L/14@336px", 1), ("RN50x64", 2), ("ViT-L/14", 3))


def tiny_clip_seeds() -> dict[str, int]:
    """``official_clip.use_tiny_clip``'s seeds by architecture name (the policy's is the default)."""
    return {REWARD_ARCH: REWARD_SEED, **dict(ENSEMBLE)}
CLASSNAMES = ("red car", "golden retriever", "airplane", "pizza", "sea turtle")
GOLDEN = Path(__file__).parents[2] / "tests" / "parity" / "golden"


def inputs(**extra: Any) -> dict[str, Any]:
    """The inputs' description written into a golden file's metadata (``tests/parity`` reads it)."""
    return {"n_samples": N_SAMPLES, "n_views": N_VIEWS, "views_seed": VIEWS_SEED, "selection_p": SELECTION_P,
            "classnames": list(CLASSNAMES), "policy_seed": POLICY_SEED, "reward_seed": REWARD_SEED,
            "weights": official_clip.weights_fingerprint(official_clip.tiny_state_dict(POLICY_SEED)),
            "reward_weights": official_clip.weights_fingerprint(official_clip.tiny_state_dict(REWARD_SEED)),
            "model": official_clip.TINY_INPUT, **extra}


def views() -> torch.Tensor:
    """``[N_SAMPLES, N_VIEWS, 3, 32, 32]`` seeded, already-normalised views (view 0 first)."""
    return official_clip.tiny_images(N_SAMPLES * N_VIEWS, VIEWS_SEED).view(
        N_SAMPLES, N_VIEWS, 3, official_clip.IMAGE_SIZE, official_clip.IMAGE_SIZE)


def labels() -> list[int]:
    return [i % len(CLASSNAMES) for i in range(N_SAMPLES)]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--official", required=True, type=Path, help="a git checkout of the official repository")
    p.add_argument("--allow-other-commit", action="store_true",
                   help="run on a checkout at another commit, printing the outputs without recording")
    p.add_argument("--out", type=Path, default=GOLDEN, help="folder of the golden files")
    return p


def checkout_commit(official: Path, pinned: str, allow_other: bool) -> tuple[str, bool]:
    """``(commit, record)``: the checkout's HEAD, and whether it may be recorded (it is the pinned
    one). Exits with a one-line error otherwise, unless ``allow_other``."""
    try:
        commit = subprocess.run(["git", "-C", str(official), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        sys.exit(f"error: {official} is not a git checkout (clone the official repository, see tools/parity/README.md)")
    if commit != pinned and not allow_other:
        sys.exit(f"error: {official} is at {commit}, not the pinned {pinned} (--allow-other-commit to look without recording)")
    return commit, commit == pinned


def write_golden(out: Path, name: str, tensors: dict[str, torch.Tensor], *, repository: str, commit: str,
                 script: str, described: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata={"repository": repository, "commit": commit, "script": script,
                        "inputs": json.dumps(described, sort_keys=True)})
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return path


def report_and_record(a: argparse.Namespace, tensors: dict[str, torch.Tensor], *, repository: str, commit: str,
                      record: bool, script: str, options: dict[str, Any], **extra: Any) -> None:
    """Print what was captured; write ``<method>.safetensors`` when the checkout is the pinned one
    (``options``: the ``-m`` options that make our method the official one on these inputs;
    ``extra``: more of the inputs' description)."""
    print({k: tuple(v.shape) for k, v in tensors.items()}, "predictions", tensors["logits"].argmax(-1).tolist())
    if record:
        write_golden(a.out, a.method.replace("-", "_"), tensors, repository=repository, commit=commit,
                     script=script, described=inputs(method=a.method, options=options, **extra))


@contextlib.contextmanager
def cpu_cuda_calls() -> Iterator[None]:
    """``Tensor.cuda`` is the identity meanwhile (the official loops call ``.cuda(args.gpu)``), and
    the CPU-autocast/GradScaler warnings of the official CUDA calls are silenced."""
    real = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.Tensor.cuda = real  # type: ignore[method-assign]


def official_args(**values: Any) -> SimpleNamespace:
    """The ``args`` an official loop reads (its ``params.get_args`` defaults where not given)."""
    base = {"gpu": 0, "tpt": True, "tta_steps": 3, "selection_p": SELECTION_P, "print_freq": 10**9,
            "min_entropy_reg": 0, "min_entropy_w": 0.1, "cocoop": False, "kd_loss": "KD"}
    return SimpleNamespace(**{**base, **values})


def loader(all_views: torch.Tensor) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """What the official ``DataLoader`` yields with ``--tpt`` and batch size 1: a list of the
    views, each ``[1, 3, S, S]`` (view 0 first), and the label ``[1]``."""
    return [([v.unsqueeze(0) for v in sample], torch.tensor([label])) for sample, label in zip(all_views, labels())]


class Capture:
    """Records the official loop's per-sample outputs: the logits of every forward run without
    gradient (the prediction on view 0), the tuned state ``snapshot()`` taken at that moment, and
    the indices the official ``select_confident_samples`` returned (wrapped in ``modules``)."""

    def __init__(self, model: torch.nn.Module, snapshot: Callable[[], torch.Tensor], modules: Sequence[Any]) -> None:
        self.logits: list[torch.Tensor] = []
        self.tuned: list[torch.Tensor] = []
        self.selected: list[torch.Tensor] = []
        self.snapshot = snapshot
        model.register_forward_hook(self._hook)
        for module in modules:
            original = module.select_confident_samples

            def select(logits: torch.Tensor, top: float, _original: Any = original) -> Any:
                out, idx = _original(logits, top)
                self.selected.append(idx.detach().clone())
                return out, idx

            module.select_confident_samples = select

    def _hook(self, _module: Any, _inputs: Any, output: torch.Tensor) -> None:
        if not torch.is_grad_enabled():
            self.logits.append(output.detach().float().clone())
            self.tuned.append(self.snapshot().detach().float().clone())

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"logits": torch.cat(self.logits), "tuned": torch.stack(self.tuned)}
        if self.selected:
            out["selected"] = torch.stack([s.sort().values for s in self.selected])
        return out


def delta_norms(named_now: dict[str, torch.Tensor], named_start: dict[str, torch.Tensor]) -> torch.Tensor:
    """``‖θ − θ₀‖`` per tensor, in sorted-name order: a few numbers that pin an image-tower update."""
    return torch.stack([(named_now[k].float() - named_start[k].float()).norm() for k in sorted(named_start)])
