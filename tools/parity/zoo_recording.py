"""Shared plumbing of the episodic-zoo recording scripts (``record_{zero,mta,tps,c_tpt,r_tpt}.py``):
the command line, the pinned-commit check, the fixed inputs of ``tests/parity/episodic_inputs.py``
and writing a golden file with its metadata (``tests/parity/conftest.py`` says what it must hold)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "parity" / "golden"


def official_checkout(repository: str, pinned: str, description: str) -> tuple[Path, str, bool]:
    """Parse ``--official DIR [--allow-other-commit]``; put DIR (a git checkout of ``repository``)
    and ``tests/parity`` on ``sys.path``. Returns ``(dir, commit, record)``: ``record`` is False when
    the checkout is at another commit than ``pinned`` and ``--allow-other-commit`` was given (the
    script then compares without writing); another commit without that flag is an error."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--official", required=True, type=Path,
                        help=f"a git checkout of https://github.com/{repository} at {pinned[:7]}")
    parser.add_argument("--allow-other-commit", action="store_true",
                        help="run against another commit of the official code without recording")
    args = parser.parse_args()
    official = args.official.resolve()
    if not official.is_dir():
        parser.error(f"--official {official}: no such folder")
    try:
        commit = subprocess.run(["git", "-C", str(official), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        parser.error(f"--official {official}: not a git checkout (clone it: tools/parity/README.md)")
    if commit != pinned and not args.allow_other_commit:
        parser.error(f"--official is at {commit}, not the pinned {pinned} (--allow-other-commit to compare "
                     "without recording)")
    sys.path[:0] = [str(official), str(ROOT / "tests" / "parity")]
    return official, commit, commit == pinned


def write_golden(name: str, tensors: dict[str, Any], *, repository: str, commit: str, script: str,
                 inputs: str) -> Path:
    """``tests/parity/golden/<name>.safetensors`` with the official outputs and where they came from."""
    from safetensors.torch import save_file

    GOLDEN.mkdir(parents=True, exist_ok=True)
    path = GOLDEN / f"{name}.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata={"repository": repository, "commit": commit, "script": script, "inputs": inputs})
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    return path


def report(name: str, official: Any, ours: Any) -> None:
    """Print how far this project's outputs are from the official ones (per-sample max |Δ|, argmax)."""
    diff = (official.float() - ours.float()).abs()
    same = (official.argmax(-1) == ours.argmax(-1)).sum().item()
    print(f"{name}: max |Δ| {diff.max().item():.3g}, identical predictions {same}/{len(official)}")


# ------------------------------------------------------- official per-sample loops on the tiny CLIP


def use_tiny_clip(official: Path) -> Any:
    """Make the official ``clip.load`` return the tiny CLIP of ``official_clip.py``; returns that
    helper module (its ``tiny_images``, ``import_official``, ...)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import official_clip

    official_clip.use_tiny_clip(official)
    return official_clip


@contextlib.contextmanager
def cpu_cuda_calls() -> Iterator[None]:
    """While an official loop runs on the CPU: ``Tensor.cuda`` is the identity (the loops call
    ``.cuda(args.gpu)``; ``Module.cuda`` goes through it) and the warnings of the CUDA-only
    ``torch.cuda.amp`` calls, which disable themselves on the CPU, are silenced."""
    import torch

    real = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.Tensor.cuda = real


def official_loader(views: Any, labels: Sequence[int]) -> list[tuple[list[Any], Any]]:
    """What an official ``DataLoader`` yields with batch size 1 and the TPT augmenter: the list of
    a sample's views, each ``[1, 3, S, S]`` (view 0 first), and its label ``[1]``."""
    import torch

    return [([v.unsqueeze(0) for v in sample], torch.tensor([label])) for sample, label in zip(views, labels)]


class LoopCapture:
    """Per-sample outputs of an official loop, taken where the loop itself hands them on: the
    logits passed to the module's ``accuracy`` (the ``call``-th call of each sample, of ``calls``),
    the tuned context at that moment, and the indices its ``select_confident_samples`` returns."""

    def __init__(self, module: Any, context: Callable[[], Any], *, calls: int = 1, call: int = 0) -> None:
        self.logits: list[Any] = []
        self.tuned: list[Any] = []
        self.selected: list[Any] = []
        select, accuracy = module.select_confident_samples, module.accuracy
        seen = [0]

        def selecting(logits: Any, top: float) -> Any:
            out, idx = select(logits, top)
            self.selected.append(idx.detach().clone())
            return out, idx

        def scoring(output: Any, target: Any, topk: Any = (1,)) -> Any:
            if seen[0] % calls == call:
                self.logits.append(output.detach().float().reshape(-1).clone())
                self.tuned.append(context().detach().float().clone())
            seen[0] += 1
            return accuracy(output, target, topk=topk)

        module.select_confident_samples, module.accuracy = selecting, scoring

    def tensors(self) -> dict[str, Any]:
        import torch

        return {"logits": torch.stack(self.logits), "tuned": torch.stack(self.tuned),
                "selected": torch.stack([s.sort().values for s in self.selected])}


def tune_prompt_only(model: Any, lr: float = 5e-3) -> tuple[Any, Any]:
    """As the official ``main`` functions: everything but the prompt learner frozen, AdamW on it;
    returns ``(optimizer, its initial state)`` (each sample reloads that state)."""
    import copy

    import torch

    for name, param in model.named_parameters():
        if "prompt_learner" not in name:
            param.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.prompt_learner.parameters(), lr)
    return optimizer, copy.deepcopy(optimizer.state_dict())


def record_prompt_tuner(name: str, method_cls: type, official_run: Callable[[Path, int], dict[str, Any]], *,
                        repository: str, pinned: str, description: str, inputs: str,
                        option_sets: Sequence[dict[str, Any]] = ({},), steps: Sequence[int] = (1, 3)) -> None:
    """The main of a prompt-tuner recording script: the official run per step count (its tensors
    stored with the suffix ``_steps<T>``), compared with ours (each option set, batch 4 and 1)."""
    official, commit, record = official_checkout(repository, pinned, description)
    import torch
    from episodic_inputs import PROMPT_DESCRIPTION, run_prompt_method

    torch.set_num_threads(1)
    golden = {}
    for n in steps:
        tensors = official_run(official, n)
        golden.update({f"{k}_steps{n}": v for k, v in tensors.items()})
        for options in option_sets:
            for batch_size in (4, 1):
                ours = run_prompt_method(use_tiny_clip(official), method_cls, {"steps": n, **options},
                                         batch_size=batch_size)
                report(f"{name}, {n} step(s), {options or 'defaults'}, batch {batch_size}", tensors["logits"],
                       ours.outputs)
                assert ours.selected is not None and ours.tuned is not None
                print(f"  same selected views: {torch.equal(ours.selected, tensors['selected'])}, "
                      f"tuned max |Δ| {(ours.tuned - tensors['tuned']).abs().max().item():.3g}")
    if record:
        write_golden(name.replace("-", "_"), golden, repository=repository, commit=commit,
                     script=f"record_{name.replace('-', '_')}.py", inputs=f"{PROMPT_DESCRIPTION}; {inputs}")
