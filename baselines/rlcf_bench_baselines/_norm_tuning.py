"""What the methods that tune the image encoder's normalisation layers per batch share (Tent,
SAR, ETA; ``docs/protocols.md``): the entropy, which layers are adapted and how, the saved state
that restores the shared model, and the base class.

Layers: every ``BatchNorm2d``, ``LayerNorm`` and ``GroupNorm`` of the image encoder (CLIPTTA's set,
``ttavlm/methods/abstract_model.py``); BatchNorm layers use the batch's statistics and keep none
(the official ``configure_model`` of Tent, SAR and EATA). ``skip``: names of layers left frozen
(SAR's top layers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlcf_bench import Batch, MethodContext, Predictions
from rlcf_bench.lazy import LazyModule
from rlcf_bench.tta.online import BatchOnlineMethod

torch: Any = LazyModule("torch")
nn: Any = LazyModule("torch.nn")

NORM_KINDS = ("BatchNorm2d", "LayerNorm", "GroupNorm")


def softmax_entropy(logits: Any) -> Any:
    """Shannon entropy (nats) of ``softmax(logits)`` per row."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def norm_layers(module: Any) -> list[Any]:
    return [m for m in module.modules() if type(m).__name__ in NORM_KINDS and isinstance(m, nn.Module)]


def configure_norms(module: Any, skip: Callable[[str], bool] = lambda name: False) -> list[Any]:
    """Freeze ``module`` except the affine parameters of its normalisation layers (returned, in
    module order: weight then bias) whose name ``skip`` does not reject; BatchNorm layers use batch
    statistics and keep none (all of them, as the official ``configure_model``)."""
    module.requires_grad_(False)
    params = []
    for name, m in module.named_modules():
        if type(m).__name__ not in NORM_KINDS:
            continue
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.train()
        if skip(name):
            continue
        for attr in ("weight", "bias"):
            p = getattr(m, attr, None)
            if isinstance(p, nn.Parameter):
                p.requires_grad_(True)
                params.append(p)
    return params


class NormState:
    """What :func:`configure_norms` changes, saved so the shared model can be restored."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.layers = [(m, m.training, getattr(m, "track_running_stats", None),
                        {k: v.detach().clone() for k, v in m.state_dict().items()}) for m in norm_layers(module)]
        self.grads = {id(p): p.requires_grad for p in module.parameters()}

    def restore(self) -> None:
        with torch.no_grad():
            for m, training, track, state in self.layers:
                m.train(training)
                if track is not None:
                    m.track_running_stats = track
                for k, v in state.items():
                    if k in ("running_mean", "running_var", "num_batches_tracked"):
                        setattr(m, k, v.clone())
                    else:
                        getattr(m, k).copy_(v)
        for p in self.module.parameters():
            p.requires_grad_(self.grads.get(id(p), False))




class NormTuningMethod(BatchOnlineMethod):
    """Base of the norm-layer tuners: ``setup`` saves and configures the encoder's norm layers and
    builds :meth:`make_optimizer`'s optimiser; ``adapt`` runs :meth:`step` ``config.steps`` times
    (each returns the logits the batch is predicted with: the official methods predict with the
    forward they adapted on); ``reset`` restores the shared model (the runner calls it at the end)."""

    def skip(self, name: str) -> bool:
        """Whether the norm layer ``name`` of the image encoder stays frozen (default: none)."""
        return False

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        visual = ctx.vlm.visual
        self.saved = NormState(visual)
        self.params = configure_norms(visual, self.skip)
        if not self.params:
            raise ValueError(f"{self.name}: the image encoder of {ctx.vlm.name!r} has no normalisation layer to adapt")
        self.optimizer = self.make_optimizer(self.params)
        self.last: Any = None

    def make_optimizer(self, params: list[Any]) -> Any:
        raise NotImplementedError

    def step(self, forward: Callable[[], Any]) -> Any:
        raise NotImplementedError

    def adapt(self, batch: Batch) -> None:
        for _ in range(self.config.steps):  # fp32: no loss scaler for a batch loss here
            self.last = self.step(lambda: self.logits(self.features(batch.images)))

    def predict(self, batch: Batch) -> Predictions:
        return Predictions(logits=self.last.float())

    def reset(self) -> None:
        self.saved.restore()
