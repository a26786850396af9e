"""The method contract, as a library: check a method — this repository's or your own plugin's —
the way the project's own contract test checks every registered method.

Through the runner, on the tiny fixture (classification by default: ``tiny-colors``, 6 samples, 8
views, 2 selected; policy ``tiny-clip`` or another of :data:`CONTRACT_MODELS`, e.g. ``tiny-siglip``;
reward model / teacher ``tiny-clip-teacher``; another task names its fixture dataset and policy:
``MethodContract(..., task=, dataset=, model=, protocol=)``), on the CPU, in a few seconds:

(a) a run leaves the model's parameters (and their ``requires_grad`` flags) exactly as it found
    them — also a run that fails part-way;
(b) an episodic method's per-sample results do not depend on the batch size (1 vs 3);
(c) a run interrupted while storing its second batch, then re-run, stores the same rows as an
    uninterrupted run (stateful methods rebuild their state by replaying the stored stream).

A broken contract raises :class:`ContractViolation` (an ``AssertionError``, so pytest reports it
as a failed test) whose message names the method and the clause. From an outside project::

    from rlcf_bench.testing import check_method_contract

    def test_my_method_keeps_the_contract(tmp_path):
        check_method_contract("my-method", tmp_path, plugins_dirs=["src/my_plugins"])

(``plugins=[...]`` adds importable plugin modules instead, as ``-p NAME`` does). The first-party
plugins that provide the fixture are always loaded. Guide: ``docs/writing-a-method.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .plugins import PluginHost
from .types import DatasetSpec, MethodSpec, RunRequest, SampleRecord

__all__ = [
    "CONTRACT_MODELS", "CONTRACT_PROTOCOL", "FIXTURE_PLUGINS", "ContractViolation", "MethodContract", "SimulatedKill",
    "check_dataset_samples", "check_method_contract", "classification_methods", "task_methods",
]

#: The first-party plugins the contract needs: the classification task, the tiny fixture
#: (dataset and models), the CLIP reward, and the repository's methods.
FIXTURE_PLUGINS: tuple[str, ...] = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models",
                                    "rlcf_bench_rlcf")
#: The protocol of every contract run: 6 samples, 8 views of which 2 are selected.
CONTRACT_PROTOCOL: tuple[tuple[str, Any], ...] = (("n_views", 8), ("selection_ratio", 0.25), ("limit", 6))
#: The policies a method is checked on: a CLIP (softmax-trained, no logit bias) and a SigLIP
#: (sigmoid-trained: a logit bias, a bidirectional text tower pooled at its last position).
CONTRACT_MODELS: tuple[str, ...] = ("tiny-clip", "tiny-siglip")

class ContractViolation(AssertionError):
    """A method broke the contract; the message names the method and the clause, (a), (b) or (c)."""


class SimulatedKill(Exception):
    """Stands in for a killed process: raised while a batch is being stored (clause (c))."""


def _host(plugins: Sequence[Any], plugins_dirs: Sequence[str | os.PathLike[str]]) -> PluginHost:
    extra = list(FIXTURE_PLUGINS) + [p for p in plugins if p not in FIXTURE_PLUGINS]
    return PluginHost(autoload=False, extra=extra, plugins_dirs=plugins_dirs)


def task_methods(task: str, plugins: Sequence[Any] = (),
                 plugins_dirs: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """The names of every method of ``task`` a host with these plugins (and the fixture's) holds."""
    return [s.name for s in _host(plugins, plugins_dirs).registry("methods") if task in s.tasks]


def classification_methods(plugins: Sequence[Any] = (),
                           plugins_dirs: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """The names of every classification method a host with these plugins (and the fixture's) holds."""
    return task_methods("classification", plugins, plugins_dirs)


def _modules(model: Any, prefix: str = "") -> dict[str, torch.nn.Module]:
    """The torch modules a policy is made of: a dual encoder's ``module``; a captioner's ``mapper``,
    ``decoder`` and the modules of its ``clip``."""
    out = {f"{prefix}{attr}": m for attr in ("module", "mapper", "decoder")
           if isinstance(m := getattr(model, attr, None), torch.nn.Module)}
    clip = getattr(model, "clip", None)
    if clip is not None and clip is not model:
        out.update(_modules(clip, f"{prefix}clip."))
    return out


def _state(modules: Mapping[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict(keep_vars=True).items()}


def _flags(modules: Mapping[str, torch.nn.Module]) -> dict[str, bool]:
    return {f"{name}.{k}": p.requires_grad for name, m in modules.items() for k, p in m.named_parameters()}


def _rows(records: Sequence[SampleRecord]) -> list[tuple[Any, ...]]:
    return [(r.sample_id, r.prediction, r.target, r.score, dict(r.extra)) for r in records]


@dataclass(frozen=True)
class MethodContract:
    """The contract for one method (``options``: its ``-m key=value`` pairs), run in ``workdir``
    (stores are written there; pytest's ``tmp_path``), with ``model`` as the policy (one of
    :data:`CONTRACT_MODELS`, or any registered model) and ``protocol_params`` added to ``protocol`` (by default
    :data:`CONTRACT_PROTOCOL`; e.g. ``(("probability", "sigmoid"),)``). :meth:`check` runs every clause; the
    ``check_*`` methods run one each."""

    method: str
    workdir: Path
    plugins: tuple[Any, ...] = ()
    plugins_dirs: tuple[str | os.PathLike[str], ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    batch_size: int = 3
    confidence_tolerance: float = 1e-5
    task: str = "classification"
    dataset: str = "tiny-colors"
    model: str = "tiny-clip"
    reward_model: str = "tiny-clip-teacher"
    protocol: tuple[tuple[str, Any], ...] = CONTRACT_PROTOCOL
    #: Samples a whole run stores (the default protocol's ``limit``; retrieval limits each direction).
    samples: int = 6
    protocol_params: tuple[tuple[str, Any], ...] = ()

    def host(self) -> PluginHost:
        return _host(self.plugins, self.plugins_dirs)

    def spec(self) -> MethodSpec:
        return self.host().registry("methods").get(self.method, self.task)

    def run(self, db: str, *, batch_size: int | None = None, fail_at_store: int | None = None) -> list[SampleRecord]:
        """Run the method into store ``db`` and check (a) on the way out, also when the run raises;
        ``fail_at_store=n`` raises :class:`SimulatedKill` at the n-th store call. The stored
        records, in sample order."""
        from .runner import ExecutionOptions, Runner
        from .store import Store

        store = Store(f"sqlite:///{Path(self.workdir) / (db + '.sqlite')}")
        # stream_flush=1: a stream stores every sample, so "the n-th store" is the n-th sample there
        options = ExecutionOptions(device="cpu", batch_size=batch_size or self.batch_size, warmup=0, stream_flush=1)
        runner = Runner(self.host(), store, options)
        modules = _modules(runner.session.model(self.model))
        before = {k: v.detach().clone() for k, v in _state(modules).items()}
        flags = _flags(modules)
        if fail_at_store is not None:
            _kill_at(store, fail_at_store)
        # a per-batch online method gets a stream of batches of 2 (rlcf_bench.streams), so (c) replays batches
        batched = (("online_batch", 2),) if self.spec().adapts_per == "batch" else ()
        req = RunRequest(task=self.task, dataset=self.dataset, method=self.method, model=self.model,
                         reward_model=self.reward_model, method_options=self.options,
                         protocol_overrides=self.protocol + self.protocol_params + batched)
        try:
            result = runner.run(req)
        finally:
            after = _state(modules)
            changed = [k for k in before if not torch.equal(before[k], after[k].detach())]
            if changed:
                raise ContractViolation(f"(a) {self.method} left the model's parameters changed: {changed[:3]}")
            now = _flags(modules)
            if now != flags:
                flipped = [k for k in flags if now[k] != flags[k]]
                raise ContractViolation(f"(a) {self.method} left requires_grad changed: {flipped[:3]}")
        if result.status != "finished":
            raise ContractViolation(f"{self.method}: the run did not finish (status {result.status!r})")
        return sorted(store.sample_records(result.run_id), key=lambda r: r.index)

    def check_model_unchanged(self) -> list[SampleRecord]:
        """(a) for a whole run; returns its records (the reference of (b) and (c))."""
        records = self.run("straight")
        n = self.samples
        if len(records) != n:
            raise ContractViolation(f"{self.method}: stored {len(records)} samples of {n}")
        return records

    def check_resume(self, straight: Sequence[SampleRecord], *, fail_at_store: int = 2) -> None:
        """(a) for a run killed while storing, then (c): re-run, it stores ``straight``'s rows."""
        try:
            self.run("resumed", fail_at_store=fail_at_store)
        except SimulatedKill:
            pass
        else:
            raise ContractViolation(f"{self.method}: the run made fewer than {fail_at_store} store calls; "
                                    f"(c) was not exercised")
        resumed, expected = _rows(self.run("resumed")), _rows(straight)
        if resumed != expected:
            first = next((i for i, (a, b) in enumerate(zip(resumed, expected)) if a != b), min(len(resumed), len(expected)))
            raise ContractViolation(f"(c) {self.method}: the resumed run stored other rows than an uninterrupted run "
                                    f"({len(resumed)} vs {len(expected)} rows; first difference at sample {first})")

    def check_batch_independent(self, straight: Sequence[SampleRecord]) -> None:
        """(b) one sample at a time gives ``straight``'s per-sample results (episodic methods)."""
        alone = self.run("alone", batch_size=1)
        for a, b in zip(alone, straight, strict=True):
            conf_a, conf_b = a.extra.get("confidence"), b.extra.get("confidence")
            same_conf = (conf_a is None and conf_b is None) or (
                conf_a is not None and conf_b is not None
                and math.isclose(conf_a, conf_b, rel_tol=0.0, abs_tol=self.confidence_tolerance))
            if a.sample_id != b.sample_id or a.prediction != b.prediction or not same_conf:
                raise ContractViolation(
                    f"(b) {self.method}: sample {b.sample_id} depends on the batch size: batch 1 gives "
                    f"{a.prediction} (confidence {conf_a}), batch {self.batch_size} gives {b.prediction} "
                    f"(confidence {conf_b})")

    def check(self) -> None:
        """Every clause: (a) always, (c) always, (b) for an episodic method."""
        episodic = self.spec().episodic
        straight = self.check_model_unchanged()
        self.check_resume(straight)
        if episodic:
            self.check_batch_independent(straight)


def _kill_at(store: Any, n: int) -> None:
    """Make the ``n``-th ``add_executed`` call of ``store`` raise :class:`SimulatedKill`."""
    add = store.add_executed
    calls = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            raise SimulatedKill
        return add(*args, **kwargs)

    store.add_executed = flaky


def check_method_contract(method: str, workdir: str | os.PathLike[str], *, plugins: Sequence[Any] = (),
                          plugins_dirs: Sequence[str | os.PathLike[str]] = (),
                          options: Sequence[tuple[str, str]] = (), models: Sequence[str] = CONTRACT_MODELS) -> None:
    """Check (a), (b) and (c) for ``method`` on each of ``models`` (a CLIP and a SigLIP by
    default), loaded with ``plugins`` (module names or objects) and ``plugins_dirs`` (folders of
    one-file plugins, as ``--plugins-dir``); stores go to ``workdir``. Raises
    :class:`ContractViolation` on the first broken clause."""
    for i, model in enumerate(models):
        folder = Path(workdir) / f"model{i}"  # a model name may hold any character (hf:/path)
        folder.mkdir(parents=True, exist_ok=True)
        MethodContract(method, folder, plugins=tuple(plugins), plugins_dirs=tuple(plugins_dirs),
                       options=tuple(options), model=model).check()


#: Images decoded per dataset by :func:`check_dataset_samples`.
DECODED_IMAGES = 3


def check_dataset_samples(host: PluginHost, spec: DatasetSpec, first: Any, second: Any) -> None:
    """The dataset contract for two loads (``first``, ``second``) of dataset ``spec``: for every
    task kind it declares, that task's ``TaskSpec.check_data`` accepts both, their sample ids are
    distinct and the same in both loads; the first images decode to uint8 ``[3, H, W]``. A task of
    the host without ``check_data``, or a kind no task of the host has, is a violation too."""
    checks: dict[str, Any] = {}  # kind -> its check (tasks of one kind share the data contract; the first declared one)
    for t in host.registry("tasks"):
        if t.check_data is not None:
            checks.setdefault(t.kind, t.check_data)
    if not len(first) == len(second) > 0:
        raise ContractViolation(f"{spec.name}: two loads gave {len(first)} and {len(second)} samples")
    for kind in sorted(spec.task_kinds):
        check = checks.get(kind)
        if check is None:
            raise ContractViolation(f"{spec.name}: no task of kind {kind!r} says what its data looks like "
                                    f"(TaskSpec.check_data)")
        try:
            ids, again = list(check(first)), list(check(second))
        except ValueError as exc:
            raise ContractViolation(f"{spec.name} ({kind}): {exc}") from exc
        if len(set(ids)) != len(ids):
            raise ContractViolation(f"{spec.name} ({kind}): duplicate ids {sorted(ids)[:5]}")
        if again != ids:
            raise ContractViolation(f"{spec.name} ({kind}): ids differ between two loads")
    for i in range(min(DECODED_IMAGES, len(first))):
        img = first.load_image(i)
        if not (isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and img.ndim == 3 and img.shape[0] == 3
                and min(img.shape[1:]) > 0):
            raise ContractViolation(f"{spec.name}: image {i} is not a uint8 [3, H, W] tensor "
                                    f"({getattr(img, 'dtype', type(img).__name__)}, {tuple(getattr(img, 'shape', ()))})")
