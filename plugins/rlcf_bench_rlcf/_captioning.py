"""RLCF for image captioning (``docs/original-code.md#captioning-episode``): tune the ClipCap/CapDec
mapping network per image.

Episode, per image (``max_batch = 1``: every image is its own episode)::

    F ← reward-model image features (once)
    repeat T = steps (4):
        P ← mapper(prefix)                     one forward, kept for the loss (exact: no dropout)
        c_1..K ← beam search on the frozen decoder from P (K beams, the K best returned, case kept)
        r_k ← 2.5·max(0, cos(F, G(c_k)));  adv_k ← r_k − mean_k r_k
        loss ← mean_k adv_k · CE(c_k | P)      per-caption mean over its own tokens
        AdamW step on the mapper only
    caption ← beam search, ``final_beams`` (5) beams, best one, lower-cased

The candidates keep the decoder's case for the reward and the loss, as the original (CLIP's
tokenizer lower-cases anyway, the loss does not: ``docs/parity.md``, RLCF captioning row).

Choices (``docs/original-code.md#known-quirks-and-bugs``): padding is excluded from the caption loss
(``-m pad_quirk=true`` restores the
original's mean over the padded length with pad targets included,
``docs/original-code.md#caption-padding-in-the-loss``); the decoder is frozen
for real (``requires_grad=False``: no gradient is computed or accumulated for it,
``docs/original-code.md#decoder-gradients-in-captioning``). The
mapper output is computed once per step and shared by generation and the loss (the original
runs it twice). ``reset`` restores the mapper bit-exactly and starts a fresh AdamW.

Defaults left unset (``k``, ``lr``) come from the captioner: its ``captioner.json`` ``tta``
entry, else the paper's (K = 10 and lr 2e-6 for ClipCap; K = 6 and lr 5e-6 for CapDec — use
``-m lr=3e-6`` for CapDec on NoCaps). AdamW eps 1e-6, weight decay 0.

Registered as the captioning implementation of ``rlcf`` (``rlcf.py``); this module is not a plugin itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import Batch, Method, MethodContext, Predictions, RewardModel, bounded

from ._paper import PAPER

PAPER_DEFAULTS = {"clipcap": {"k": 10, "lr": 2e-6}, "capdec": {"k": 6, "lr": 5e-6}}


@dataclass(frozen=True)
class RLCFCaptionConfig:
    steps: int = bounded(4, ge=0)
    k: int | None = bounded(None, ge=1)
    lr: float | None = bounded(None, gt=0)
    weight_decay: float = bounded(0.0, ge=0)
    eps: float = bounded(1e-6, gt=0)
    max_new_tokens: int | None = bounded(None, ge=1)
    final_beams: int = bounded(5, ge=1)
    pad_quirk: bool = False
    baseline: str = "mean"


class RLCFCaption(Method[RLCFCaptionConfig]):
    """RLCF for captioning: K-beam candidates, CLIP reward, mean baseline, mapper-only AdamW."""

    name = "rlcf"
    version = "1"
    config_cls = RLCFCaptionConfig
    tasks = frozenset({"captioning"})
    requires = frozenset({"reward_model"})
    paper = PAPER
    max_batch = 1

    def setup(self, ctx: MethodContext) -> None:
        from rlcf_bench.tta.episode import ParamSnapshot

        c = self.config
        if c.baseline not in {"mean", "none"}:
            raise ValueError(f"baseline={c.baseline!r}: expected 'mean' or 'none'")
        self.ctx = ctx
        self.model = ctx.captioner
        reward = ctx.reward_model
        if reward is None:
            raise ValueError("rlcf (captioning) needs a reward model")
        self.reward: RewardModel = reward
        defaults = {**PAPER_DEFAULTS.get(self.model.kind, PAPER_DEFAULTS["clipcap"]),
                    **dict(getattr(self.model.settings, "tta", {}) or {})}
        self.k = int(c.k if c.k is not None else defaults["k"])
        self.lr = float(c.lr if c.lr is not None else defaults["lr"])
        if self.k < 2 and c.baseline == "mean":
            raise ValueError("k must be at least 2 with the mean baseline")
        self.params = list(self.model.mapper.parameters())
        self.snapshot = ParamSnapshot(self.params)
        self.optimizer: Any = None
        self._feats: Any = None
        self._log: list[dict[str, Any]] = []

    def _section(self, name: str) -> Any:
        return self.ctx.timer.section(name)

    def reset(self) -> None:
        import torch

        self.snapshot.restore()
        for p in self.params:
            p.requires_grad_(False)
            p.grad = None
        self.optimizer = torch.optim.AdamW(self.params, lr=self.lr, eps=self.config.eps,
                                           weight_decay=self.config.weight_decay)
        self._feats = None
        self._log = []

    def adapt(self, batch: Batch) -> None:

        if self.optimizer is None:
            self.reset()
        c, model, amp = self.config, self.model, self.ctx.amp
        assert batch.images is not None, "a captioning batch carries images"
        feats = model.encode_images(batch.images)
        self._feats = feats
        if c.steps <= 0:
            return
        with self._section("reward"):
            image_feats = self.reward.image_features(batch.images)
        log: dict[str, Any] = {"reward_mean": [], "reward_max": []}
        model.mapper.train()
        for p in self.params:
            p.requires_grad_(True)
        try:
            for _ in range(c.steps):
                with amp.autocast():
                    prefix = model.prefix_embeddings(feats)  # [1, P, D], with the graph for the loss
                    captions = model.generate(prefix.detach(), self.k, self.k, c.max_new_tokens, lower=False)[0]
                with self._section("reward"):
                    text_feats = self.reward.text_features(captions)
                    rewards = self.reward.score([f.expand(len(captions), -1) for f in image_feats], text_feats).float()
                adv = rewards - rewards.mean() if c.baseline == "mean" else rewards
                ids, mask = model.encode_captions(captions)
                with amp.autocast():
                    losses = model.caption_losses(prefix.expand(len(captions), -1, -1), ids, mask,
                                                  pad_quirk=c.pad_quirk)
                loss = (adv.detach().to(losses.device) * losses).mean()
                self.optimizer.zero_grad(set_to_none=True)
                amp.backward_step(loss, self.optimizer)
                log["reward_mean"].append(round(float(rewards.mean()), 5))
                log["reward_max"].append(round(float(rewards.max()), 5))
        finally:
            for p in self.params:
                p.requires_grad_(False)
            model.mapper.eval()
        self._log = [log]

    def predict(self, batch: Batch) -> Predictions:
        import torch

        model = self.model
        assert batch.images is not None, "a captioning batch carries images"
        feats = self._feats if self._feats is not None else model.encode_images(batch.images)
        with torch.no_grad(), self.ctx.amp.autocast():
            prefix = model.prefix_embeddings(feats)
            captions = [row[0] for row in model.generate(prefix, self.config.final_beams, 1, self.config.max_new_tokens)]
        extras = [{"k": self.k, "lr": self.lr, **(self._log[0] if self._log else {})} for _ in captions]
        return Predictions(captions=captions, extras=extras)

