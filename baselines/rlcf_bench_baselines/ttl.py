"""TTL — test-time low-rank adaptation (Imam et al., "Test-Time Low Rank Adaptation via Confidence
Maximization for Zero-Shot Generalization of Vision-Language Models", WACV 2025), as TTA-VLM runs
it (``TomSheng21/tta-vlm instance_method/ttl.py``, model ``clip/custom_clip.py
ClipLoraTestTimeTuning_v2``, ``--algorithm ttl``).

Episode (per sample; reset before each): LoRA adapters on the query and value projections of the
image tower's last 3 attention blocks (rank 16, α 32, so the update is ``2·x A B``; ``A`` drawn
once per run, Xavier-normal, ``B = 0``, so an episode starts at the frozen model), reset to that
start before every sample with a fresh AdamW (lr 5e-3, weight decay 0.01, torch's defaults
otherwise); then ``steps`` (1) times: the per-view entropies ``H_v`` of **all** views (no
confidence selection), weighted by ``exp(−(H_v − 0.4))`` (detached), averaged; one AdamW step on
the adapters. Predict view 0 under the adapted tower, against the class text features of the
single prompt (computed once per run).

Choices (``-m``): ``lr``, ``steps``, ``rank``, ``lora_alpha``, ``blocks`` (how many of the last
attention blocks get adapters: the port's ``layer_indices=[9, 10, 11]`` of ViT-B/16's 12),
``entropy_margin`` (0.4), ``weight_decay`` (0.01, AdamW's default the port keeps). The adapters'
dropout (0.05) is inactive, as in the port, which puts the model in eval mode.

Departures: the adapters are folded into the projection weights, ``W + 2·(A B)ᵀ`` (the same
function as the port's ``W x + 2·B(A x)``, summed in another order), so open_clip's own attention
runs instead of the port's re-implementation; fp32 (the port: fp16 autocast with a GradScaler,
init scale 1000); ``A`` comes from a generator seeded by the run's seed (the port's from the global
RNG when the model is built). On a ResNet tower (the micro suite's student), which has no attention
blocks, the adapters go on the attention pool's query and value projections, its only attention —
the port's ``add_lora`` supports ViTs only. Cost: a forward of every view with a graph and a
backward through the adapted blocks, per step, then one forward for the prediction; no view
feature can be shared with other methods (the adapted tower changes them). ``state_size``: the
adapters and AdamW's two moments (``state_bytes``) and their element count (``state_entries``).
With the same ``A``, per sample the logits and the adapters equal the port's to float rounding
(docs/parity.md). No reference rows: neither the TTL paper's nor TTA-VLM's tables could be read
here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rlcf_bench import Batch, Method, MethodContext, MethodSpec, Predictions, hookimpl
from rlcf_bench.tta.episode import image_encoder, sections
from rlcf_bench.tta.optim import adamw
from rlcf_bench.tta.prompts import class_text_features


@dataclass(frozen=True)
class TTLConfig:
    """See the module docstring."""

    lr: float = 5e-3
    steps: int = 1
    rank: int = 16
    lora_alpha: float = 32.0
    blocks: int = 3
    entropy_margin: float = 0.4
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        for name in ("steps", "rank", "blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected ≥ 1")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}: expected > 0")


@dataclass(frozen=True)
class LoRASite:
    """One adapted projection: rows ``[start, start + rows)`` of the weight ``name`` (``model.…``),
    ``cols`` input features."""

    name: str
    start: int
    rows: int
    cols: int


def lora_sites(vlm: Any, blocks: int) -> list[LoRASite]:
    """Query and value projections of the last ``blocks`` attention blocks of the image tower (a
    ViT's fused ``in_proj_weight``: rows ``[0, d)`` and ``[2d, 3d)``), or of a ResNet tower's
    attention pool."""
    names = {id(p): f"model.{n}" for n, p in vlm.module.named_parameters()}
    visual = vlm.visual
    resblocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if resblocks is not None:
        sites = []
        for block in list(resblocks)[-blocks:]:
            w = block.attn.in_proj_weight
            d = w.shape[1]
            sites += [LoRASite(names[id(w)], 0, d, d), LoRASite(names[id(w)], 2 * d, d, d)]
        return sites
    pool = getattr(visual, "attnpool", None)
    if pool is not None:
        return [LoRASite(names[id(p.weight)], 0, p.weight.shape[0], p.weight.shape[1])
                for p in (pool.q_proj, pool.v_proj)]
    raise ValueError(f"ttl adapts attention projections: the image tower {type(visual).__name__} has none")


class TTL(Method[Any]):
    """TTL: LoRA on the image tower's last attention blocks, tuned per sample on weighted entropy."""

    name = "ttl"
    version = "1"
    config_cls = TTLConfig
    tasks = frozenset({"classification"})
    paper = ("Imam et al., Test-Time Low Rank Adaptation via Confidence Maximization for Zero-Shot "
             "Generalization of Vision-Language Models (WACV 2025)")
    episodic: ClassVar[bool] = True
    max_batch: ClassVar[int] = 1

    def setup(self, ctx: MethodContext) -> None:
        import torch

        c = self.config
        self.ctx, self.section = ctx, sections(ctx)
        self.text = class_text_features(ctx)  # [C, E], once per run
        self.scale = float(ctx.vlm.logit_scale)
        self.encoder = image_encoder(ctx.vlm)
        self.sites = lora_sites(ctx.vlm, c.blocks)
        self.weights = {f"model.{n}": p for n, p in ctx.vlm.module.named_parameters()}
        g = torch.Generator().manual_seed(ctx.seed)
        self.a_init = [self.xavier_normal((site.cols, c.rank), g).to(ctx.device) for site in self.sites]
        self.a = [torch.nn.Parameter(a.clone()) for a in self.a_init]
        self.b = [torch.nn.Parameter(torch.zeros(c.rank, site.rows, device=ctx.device)) for site in self.sites]
        self.optimizer = adamw([*self.a, *self.b], lr=c.lr, weight_decay=c.weight_decay)

    @staticmethod
    def xavier_normal(shape: tuple[int, int], g: Any) -> Any:
        """``torch.nn.init.xavier_normal_`` of an ``[in, r]`` matrix (fan-in r, fan-out in), seeded."""
        import torch

        std = (2.0 / (shape[0] + shape[1])) ** 0.5
        return torch.randn(shape, generator=g) * std

    def reset(self) -> None:
        import torch

        with torch.no_grad():
            for a, a0, b in zip(self.a, self.a_init, self.b):
                a.copy_(a0)
                b.zero_()
                a.grad = b.grad = None
        self.optimizer.state.clear()

    def adapted_weights(self) -> dict[str, Any]:
        """The adapted projection weights by name: ``W`` plus ``(α/r)·(A B)ᵀ`` in each site's rows."""
        import torch

        scaling = self.config.lora_alpha / self.config.rank
        out: dict[str, Any] = {}
        for site, a, b in zip(self.sites, self.a, self.b):
            base = out.get(site.name, self.weights[site.name])
            rows = torch.arange(site.start, site.start + site.rows, device=base.device)
            out[site.name] = base.index_add(0, rows, scaling * (a @ b).t().to(base.dtype))
        return out

    def logits(self, images: Any) -> Any:
        import torch
        import torch.nn.functional as F

        with self.section("image_encoder"):
            feats = torch.func.functional_call(self.encoder, self.adapted_weights(), (images,))
        return self.scale * F.normalize(feats.float(), dim=-1) @ self.text.t()

    def adapt(self, batch: Batch) -> None:
        import torch

        c = self.config
        with self.section("views"):
            views = batch.views[0]  # [V, 3, S, S]
        for _ in range(c.steps):
            self.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad(), self.ctx.amp.autocast():
                logits = self.logits(views).float()
                entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)  # [V]
                loss = (entropy * torch.exp(-(entropy.detach() - c.entropy_margin))).mean()
            with self.section("backward+optimizer"):
                self.ctx.amp.backward_step(loss.unsqueeze(0), self.optimizer)

    def predict(self, batch: Batch) -> Predictions:
        import torch

        assert batch.images is not None
        with torch.no_grad(), self.ctx.amp.autocast():
            return Predictions(logits=self.logits(batch.images).float())

    def state_size(self) -> dict[str, int]:
        """The adapters (``A``, ``B``) and AdamW's two moments per adapter element."""
        params = [*self.a, *self.b]
        n = sum(p.numel() for p in params)
        return {"state_entries": n, "state_bytes": 3 * sum(p.numel() * p.element_size() for p in params)}


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(TTL)]
