"""rlcf-bench: a plugin-based benchmark for test-time adaptation of vision-language models.

Write a plugin in ten lines::

    from rlcf_bench import hookimpl, Method, MethodSpec, Predictions

    class MyMethod(Method[None]):
        name = "my-method"
        def setup(self, ctx): self.ctx = ctx
        def predict(self, batch): ...

    @hookimpl
    def rlcfb_register_methods():
        return [MethodSpec.from_method(MyMethod)]

Then ``rlcf-bench run --plugins-dir DIR --method my-method`` or register the module under the
``rlcf_bench`` entry-point group. See README.md, "Write a method in one file".
"""

from .hookspecs import hookimpl
from .session import ComponentSession
from .task import TaskRuntime
from .types import (
    Amp,
    Batch,
    Comparisons,
    DatasetAverage,
    DatasetLayoutError,
    DatasetSpec,
    LayoutReport,
    Method,
    MethodContext,
    MethodFamily,
    MethodSpec,
    MetricSpec,
    MetricValue,
    ModelSpec,
    NullTimer,
    Predictions,
    ReferenceResult,
    ReportSection,
    RewardBuilder,
    RewardModel,
    RewardModelSpec,
    RunProtocol,
    RunRequest,
    SampleRecord,
    SampleScore,
    SuiteRun,
    SuiteSpec,
    TaskMetrics,
    TaskSpec,
    Timer,
    ViewPolicy,
    VisionLanguageModel,
    bounded,
)

__version__ = "0.1.0"

__all__ = [
    "Amp", "Batch", "Comparisons", "ComponentSession", "DatasetAverage", "DatasetLayoutError", "DatasetSpec", "LayoutReport", "Method",
    "MethodContext", "MethodFamily", "MethodSpec", "MetricSpec", "MetricValue", "ModelSpec", "NullTimer", "Predictions",
    "ReferenceResult", "ReportSection", "RewardBuilder", "RewardModel", "RewardModelSpec", "RunProtocol", "RunRequest",
    "SampleRecord", "SampleScore", "SuiteRun", "SuiteSpec", "TaskMetrics", "TaskRuntime", "TaskSpec", "Timer", "ViewPolicy",
    "VisionLanguageModel", "__version__", "bounded", "hookimpl",
]
