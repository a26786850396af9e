"""Run records (what reporters observe and the store keeps): a run's identity, its steps, results
and errors; reference numbers and report sections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .data import MetricValue
from .protocol import RunProtocol, stable_hash


@dataclass(frozen=True)
class ReferenceResult:
    """A number reported elsewhere (a paper), stored beside measured runs for comparison."""

    task: str
    dataset: str
    method: str
    model: str
    metric: str
    value: float
    source: str
    reward_model: str | None = None
    note: str = ""


@dataclass(frozen=True)
class ReportSection:
    title: str
    markdown: str


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class RunSpec:
    """The identity and provenance of one run (one row of ``runs``)."""

    task: str
    task_version: str
    dataset: str
    dataset_version: str
    method: str
    method_version: str
    method_config: Mapping[str, Any]
    model: str
    model_version: str
    reward_model: str | None
    protocol: RunProtocol
    seed: int
    device: str
    bench_version: str
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    reward_model_version: str | None = None

    @property
    def config_hash(self) -> str:
        return stable_hash(dict(self.method_config))

    @property
    def protocol_hash(self) -> str:
        return self.protocol.hash

    @property
    def key(self) -> str:
        """Identity used for resume: the same key continues the same run."""
        return stable_hash(
            [
                self.task, self.task_version, self.dataset, self.dataset_version,
                dict(self.dataset_params), self.method, self.method_version, self.config_hash,
                self.model, self.model_version, self.reward_model, self.reward_model_version,
                self.protocol_hash, self.seed, self.bench_version,
            ],
            length=24,
        )


@dataclass(frozen=True)
class StepRecord:
    """One executed batch: timings are per batch, device-synchronised."""

    run_id: int
    sample_ids: tuple[str, ...]
    adapt_ms: float
    predict_ms: float
    done: int
    total: int


@dataclass(frozen=True)
class LatencyStats:
    ms_per_sample_mean: float
    ms_per_sample_p50: float
    ms_per_sample_p95: float
    adapt_ms_mean: float
    predict_ms_mean: float
    warmup_samples: int
    timed_samples: int
    peak_memory_mb: float | None
    memory_kind: str


@dataclass(frozen=True)
class RunResult:
    run_id: int
    spec: RunSpec
    metrics: Mapping[str, MetricValue]
    latency: LatencyStats | None
    n_samples: int
    status: str
    reused: bool = False  # a finished run found in the store: nothing was executed


@dataclass(frozen=True)
class RunError:
    run_id: int | None
    spec: RunSpec | None
    exc_type: str
    message: str
    traceback: str


# Keys of the per-run provenance dictionary stored in the ``runs`` table.
PROVENANCE_KEYS: tuple[str, ...] = (
    "torch", "torchvision", "open_clip", "transformers", "rlcf_bench", "python", "git_commit", "git_dirty",
)
