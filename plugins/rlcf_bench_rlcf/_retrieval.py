"""RLCF for zero-shot image–text retrieval (``docs/original-code.md#retrieval``), method ``rlcf`` of
the ``retrieval`` task.

What is tuned depends on the query's direction:

* **image→text** (an image ranks all captions): all parameters of the policy's **image tower**;
  the frozen text tower's features of all captions are cached once per run.
* **text→image** (a caption ranks all images): all **non-visual** parameters — token and
  positional embeddings, text transformer, ``ln_final``, ``text_projection`` and, for parity
  with the original (``docs/original-code.md#retrieval-tunes-the-logit-scale``), ``logit_scale``
  (``-m tune_logit_scale=false`` to freeze it);
  the frozen image tower's features of all images are cached once per run.

Per query, ``steps`` (8) AdamW steps (lr 1e-6, wd 5e-4, eps 1e-6)::

    z ← exp(logit_scale) · q_θ · Cᵀ                 (query vs ALL N cached candidates)
    A ← top-K candidates of z (deterministic, ``docs/original-code.md#top-k-instead-of-sampling``)
    r_k ← 2.5·max(0, cos) of (query, candidate A_k) under the reward model
    loss ← mean_k (r_k − mean r) · CE(z, A_k)        (REINFORCE, mean-of-K baseline)

``K``: ``k_t2i`` = 12; ``k_i2t`` = 16 on Flickr30k and 20 elsewhere (COCO) when left unset, as
the shipped scripts. The reward model's features of the gallery are computed once per run, those
of the query once per query (not per step); the caption is tokenised once per query. The
prediction is ``z`` of the query under the adapted weights against the cached candidates.

Reset restores only the tower tuned by the last query (in place, bit-exact) and clears its AdamW
state; the original reloads the whole CLIP state dict per query
(``docs/original-code.md#cost-of-the-original-code``). One query per episode
(``max_batch = 1``): the tuned weights are shared by the batch.

Momentum (``-m momentum=true``, ``docs/original-code.md#momentum-start-point``; off by default as in
the RLCF row): per direction, the
adapted weights of each query are folded into an EMA of the tuned tower (``momentum_mu``); every
``momentum_freq`` queries of that direction the episode start point becomes
``(1−w)·θ_clip + w·EMA``. ``reset`` still restores θ_clip (so a run leaves the model as found);
the start point is loaded when the next episode begins. With momentum the method reports
``carries_state``: the runner feeds queries one at a time and a resumed run replays the stored
queries first, so its EMA equals that of an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlcf_bench import Batch, Method, MethodContext, Predictions, bounded
from rlcf_bench_tasks.retrieval_common import (
    batch_direction,
    encode_queries,
    predict_by_direction,
    ranked_scores,
)

from ._paper import PAPER

if TYPE_CHECKING:  # pragma: no cover
    import torch


K_I2T_COCO = 20
K_I2T_FLICKR = 16


@dataclass(frozen=True)
class RLCFRetrievalConfig:
    steps: int = bounded(8, ge=0)
    lr: float = bounded(1e-6, gt=0)
    weight_decay: float = bounded(5e-4, ge=0)
    eps: float = bounded(1e-6, gt=0)
    k_i2t: int | None = bounded(None, ge=1)  # None: 16 on Flickr30k, 20 otherwise
    k_t2i: int = bounded(12, ge=1)
    tune_logit_scale: bool = True
    momentum: bool = False
    momentum_mu: float = bounded(0.9998, ge=0, le=1)
    momentum_freq: int = bounded(64, ge=1)
    momentum_w: float = bounded(1.0, ge=0, le=1)


class _Tower:
    """The tuned parameters of one direction: snapshot, optimizer and optional momentum start."""

    def __init__(self, params: list[Any], config: RLCFRetrievalConfig) -> None:
        from rlcf_bench.tta.episode import MomentumStart, ParamSnapshot
        from rlcf_bench.tta.optim import adamw

        self.params = params
        self.snapshot = ParamSnapshot(params)
        self.optimizer = adamw(params, lr=config.lr, weight_decay=config.weight_decay, eps=config.eps)
        self.dirty = False
        self.momentum = (MomentumStart(self.snapshot.saved, mu=config.momentum_mu, freq=config.momentum_freq,
                                       w=config.momentum_w) if config.momentum else None)

    def begin(self) -> None:
        if self.momentum is not None and self.momentum.start is not None:
            self.snapshot.restore(self.momentum.start)  # the episode starts from the momentum point
        self.dirty = True

    def reset(self) -> None:
        if self.dirty:
            self.snapshot.restore()
            for p in self.params:
                p.grad = None
            self.dirty = False
        self.optimizer.state.clear()

    def momentum_update(self) -> None:
        if self.momentum is not None:
            self.momentum.update(self.params)


class RLCFRetrieval(Method[RLCFRetrievalConfig]):
    """RLCF for image-text retrieval: tunes the query's tower with CLIP-reward REINFORCE over top-K candidates."""

    name = "rlcf"
    version = "1"
    config_cls = RLCFRetrievalConfig
    tasks = frozenset({"retrieval"})
    requires = frozenset({"reward_model"})
    episodic = True
    max_batch = 1
    paper = PAPER

    # ---------------------------------------------------------------- setup
    def setup(self, ctx: MethodContext) -> None:
        from rlcf_bench.tta.episode import sections

        if ctx.gallery is None or ctx.reward_model is None:
            raise ValueError("rlcf (retrieval) needs the retrieval task's gallery and a reward model")
        self.ctx = ctx
        self.section = sections(ctx)
        self.gallery = ctx.gallery
        self.model = ctx.vlm
        self.module = self.model.module
        self.directions = tuple(self.gallery.directions)
        # Frozen candidate features, once per run, before anything is tuned.
        self.candidates = {d: self.gallery.candidate_features(d, self.model, ctx.amp) for d in self.directions}
        with self.section("reward"):
            self.reward_candidates = {d: [f.to(ctx.device) for f in
                                          self.gallery.reward_candidate_features(d, ctx.reward_model, self.model)]
                                      for d in self.directions}
        self.towers: dict[str, _Tower] = {}
        self.last: dict[str, Any] = {}

    def k_for(self, direction: str) -> int:
        c = self.config
        if direction == "t2i":
            k = c.k_t2i
        elif c.k_i2t is not None:
            k = c.k_i2t
        else:
            k = K_I2T_FLICKR if "flickr" in self.gallery.name.lower() else K_I2T_COCO
        if k < 1:
            raise ValueError(f"K for {direction} must be >= 1, got {k}")
        return min(int(k), int(self.gallery.n_candidates(direction)))

    def tuned_parameters(self, direction: str) -> list[Any]:
        """i2t: the image tower; t2i: every non-visual parameter (``logit_scale`` optional)."""
        if direction == "i2t":
            return list(self.module.get_submodule("visual").parameters())
        return [p for n, p in self.module.named_parameters()
                if not n.startswith("visual.") and (self.config.tune_logit_scale or n != "logit_scale")]

    def tower(self, direction: str) -> _Tower:
        if direction not in self.towers:
            self.towers[direction] = _Tower(self.tuned_parameters(direction), self.config)
        return self.towers[direction]

    # ---------------------------------------------------------------- the episode
    def reset(self) -> None:
        for t in self.towers.values():
            t.reset()
        self.last = {}

    def _scale(self) -> Any:
        ls = getattr(self.module, "logit_scale", None)
        return ls.exp() if ls is not None and hasattr(ls, "exp") else float(self.model.logit_scale)

    def _logits(self, direction: str, batch: Batch, tokens: torch.Tensor | None) -> torch.Tensor:
        q = encode_queries(self.model, direction, batch, tokens)
        logits: torch.Tensor = self._scale() * q @ self.candidates[direction].t()
        return logits

    def _query_reward_features(self, direction: str, batch: Batch) -> list[torch.Tensor]:
        reward = self.ctx.reward_model
        assert reward is not None
        with self.section("reward"):
            if direction == "i2t":
                assert batch.images is not None
                return reward.image_features(batch.images)
            assert batch.texts is not None
            return reward.text_features(list(batch.texts))

    def rewards(self, direction: str, query_feats: list[torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Reward ``[B, K]`` of each (query, candidate) pair from the reward model."""
        reward = self.ctx.reward_model
        assert reward is not None
        b, k = actions.shape
        flat = actions.reshape(-1)
        with self.section("reward"):
            queries = [f.repeat_interleave(k, dim=0) for f in query_feats]
            cands = [c[flat.to(c.device)] for c in self.reward_candidates[direction]]
            pairs = (queries, cands) if direction == "i2t" else (cands, queries)
            return reward.score(*pairs).view(b, k).to(actions.device)

    def adapt(self, batch: Batch) -> None:
        if self.config.steps <= 0:
            return
        self._episode(batch_direction(batch), batch)

    def _episode(self, direction: str, batch: Batch) -> None:

        from rlcf_bench.tta.episode import trainable
        from rlcf_bench.tta.objectives import process_rewards, reinforce_loss

        if len(batch) != 1:
            raise ValueError("rlcf (retrieval) adapts one query at a time (max_batch = 1)")
        amp = self.ctx.amp
        tower = self.tower(direction)
        k = self.k_for(direction)
        tokens = None
        if direction == "t2i":
            assert batch.texts is not None
            tokens = self.model.tokenize(list(batch.texts)).to(self.ctx.device)
        query_feats = self._query_reward_features(direction, batch)
        tower.begin()
        history = []
        with trainable(tower.params):
            for _ in range(self.config.steps):
                tower.optimizer.zero_grad(set_to_none=True)
                with amp.autocast():
                    z = self._logits(direction, batch, tokens)  # [1, N]
                    actions = z.detach().topk(k, dim=-1).indices  # [1, K]
                    r = self.rewards(direction, query_feats, actions)
                    adv = process_rewards(r.unsqueeze(1), baseline="view")  # mean-of-K baseline
                    loss = reinforce_loss(z.unsqueeze(1), actions.unsqueeze(1), adv).sum()
                with self.section("optimizer"):
                    amp.backward_step(loss, tower.optimizer)
                history.append(float(r.mean()))
        self.last = {"direction": direction, "k": k, "reward_first": history[0], "reward_last": history[-1]}

    def predict(self, batch: Batch) -> Predictions:
        return predict_by_direction(batch, self._predict_scores, self._extras)

    def _predict_scores(self, direction: str, batch: Batch) -> torch.Tensor:
        import torch

        with torch.no_grad():
            with self.ctx.amp.autocast():
                queries = encode_queries(self.model, direction, batch, None)
            return ranked_scores(queries, self.candidates[direction], self._scale())

    def _extras(self, direction: str, batch: Batch) -> list[dict[str, Any]]:
        extra = {"k": self.k_for(direction)}
        if self.last.get("direction") == direction and self.config.steps > 0:
            extra.update(reward_first=round(self.last["reward_first"], 6), reward_last=round(self.last["reward_last"], 6))
        return [dict(extra) for _ in range(len(batch))]

    @property
    def carries_state(self) -> bool:
        return bool(self.config.momentum)

    def after_predict(self, batch: Batch) -> None:
        if not self.config.momentum or self.config.steps <= 0:
            return
        self.tower(batch_direction(batch)).momentum_update()

