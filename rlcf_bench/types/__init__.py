"""Public types for plugin authors.

Everything a plugin returns from a registration hook is a frozen *spec*; everything the runner
hands a method at run time is a plain typed object. Hooks announce components; the objects do the
work (see ``hookspecs.py``).

Every name is imported from here (``from rlcf_bench.types import MethodContext``); the modules
of this package only group them by concern:

* :mod:`~rlcf_bench.types.protocol` — the frozen, hashed run protocol and the view policies;
* :mod:`~rlcf_bench.types.data` — batches, predictions, per-sample records, metric values;
* :mod:`~rlcf_bench.types.interfaces` — the runtime Protocols (policy models, reward model, amp, timer);
* :mod:`~rlcf_bench.types.method` — the method base class, its context and spec;
* :mod:`~rlcf_bench.types.task` and :mod:`~rlcf_bench.types.metrics` — the task spec and its metric metadata;
* :mod:`~rlcf_bench.types.components` — dataset, model and reward-model specs;
* :mod:`~rlcf_bench.types.suites` — run requests, suites, averages and comparisons;
* :mod:`~rlcf_bench.types.records` — run identity and records, reference numbers, report sections;
* :mod:`~rlcf_bench.types.layout` — dataset layout reports;
* :mod:`~rlcf_bench.types.params` and :mod:`~rlcf_bench.types.protocol_params` — declared ranges
  and rules of options and parameters, and reading them from ``key=value`` strings.

This package must stay cheap to import: no torch at module level (``rlcf-bench ls`` is instant).
"""

from __future__ import annotations

from .components import DatasetSpec, ModelSpec, RewardBuilder, RewardModelSpec
from .data import SKIPPED, Batch, MetricValue, Predictions, SampleRecord
from .interfaces import Amp, CaptioningModel, NullTimer, RewardModel, Timer, VisionLanguageModel
from .layout import DatasetLayoutError, LayoutProblem, LayoutReport
from .method import ConfigT, Method, MethodContext, MethodSpec
from .metrics import IntervalMethod, MetricSpec, PairedTestName, SampleScore, TaskMetrics
from .params import (
    CONVENTIONAL_RANGES,
    RANGE_KEY,
    ParamRule,
    Range,
    bounded,
    check_config,
    check_params,
    config_from_pairs,
    field_range,
)
from .protocol import (
    VIEW_POLICIES,
    VIEW_POLICY_PARAM,
    RunProtocol,
    ViewPolicy,
    check_view_policy,
    resolve_view_policy,
    stable_hash,
)
from .protocol_params import (
    HOST_PROTOCOL_PARAMS,
    PROTOCOL_CHOICES,
    PROTOCOL_RANGES,
    check_protocol_params,
    protocol_overrides,
)
from .records import (
    PROVENANCE_KEYS,
    LatencyStats,
    PluginInfo,
    ReferenceResult,
    ReportSection,
    RunError,
    RunResult,
    RunSpec,
    StepRecord,
)
from .suites import NO_COMPARISONS, Comparisons, DatasetAverage, MethodFamily, RunRequest, SuiteRun, SuiteSpec
from .task import TaskSpec

__all__ = [
    "CONVENTIONAL_RANGES", "HOST_PROTOCOL_PARAMS", "NO_COMPARISONS", "PROTOCOL_CHOICES", "PROTOCOL_RANGES",
    "PROVENANCE_KEYS", "RANGE_KEY", "SKIPPED", "VIEW_POLICIES", "VIEW_POLICY_PARAM",
    "Amp", "Batch", "CaptioningModel", "Comparisons", "ConfigT", "DatasetAverage", "DatasetLayoutError",
    "DatasetSpec", "IntervalMethod", "LatencyStats", "LayoutProblem", "LayoutReport", "Method",
    "MethodContext", "MethodFamily", "MethodSpec", "MetricSpec", "MetricValue", "ModelSpec", "NullTimer",
    "PairedTestName", "ParamRule", "PluginInfo", "Predictions", "Range", "ReferenceResult", "ReportSection",
    "RewardBuilder", "RewardModel", "RewardModelSpec", "RunError", "RunProtocol", "RunRequest", "RunResult",
    "RunSpec", "SampleRecord", "SampleScore", "StepRecord", "SuiteRun", "SuiteSpec", "TaskMetrics",
    "TaskSpec", "Timer", "ViewPolicy", "VisionLanguageModel",
    "bounded", "check_config", "check_params", "check_protocol_params", "check_view_policy",
    "config_from_pairs", "field_range", "protocol_overrides", "resolve_view_policy", "stable_hash",
]
