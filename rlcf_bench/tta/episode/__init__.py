"""The shared test-time tuning episode of TPT and RLCF, and the two things they tune.

One episode (``docs/original-code.md#prompt-tuning-episode``,
``docs/original-code.md#image-encoder-tuning``), for a batch of B independent test samples::

    views [B, V, 3, S, S]                           (the protocol's seeded views, view 0 first)
    step 0: logits of all V views under the initial state  →  select the ⌊ρV⌋ most confident
            views once; objective.begin(selected views)      (e.g. reward image features, once)
    steps 0..T-1: zero grads; per-sample losses of the selected views, SUMMED over the batch;
            one (scaled) backward and one AdamW step
    predict: logits of view 0 under the adapted state

A method is only (objective, tuner): :class:`~rlcf_bench.tta.objectives.Objective` says what is
minimised, a :class:`Tuner` says what is tuned and how logits are produced without wasted work:

* :class:`PromptTuner` — a ``[B, n_ctx, D]`` prompt context, one row per sample. The image
  features of all V views are computed once, without gradient; each step runs only the text
  tower (truncated prompts). The step-0 selection logits are the step-0 loss logits (one text
  forward serves both). Prediction reuses the frozen view-0 features. Its base
  :class:`PerSampleTuner` holds all of this for any per-sample tensor mapped to class features
  (TPS's prototype shifts are another one).
* :class:`ImageEncoderTuner` — the image tower's parameters, one copy per sample (the model is
  never written; samples are forwarded at once with ``torch.func.vmap``). Class text features
  are cached once per run. Selection is a no-grad forward of the V views under the frozen
  start point (read from the invocation's shared feature cache when the run has one; then only
  the selected views' pixels are cut); each step forwards/back-propagates only the selected
  views (the original keeps a 64-view graph at step 0 although only 6 rows carry gradient,
  ``docs/original-code.md#cost-of-the-original-code``). AdamW is torch's fused kernel on the CPU
  (:mod:`rlcf_bench.tta.optim`).

Batching is exact: the losses are summed, so each sample's context receives exactly its own
gradient, and AdamW is elementwise. (Under fp16 autocast each sample has its own loss scale and
overflow check, :class:`rlcf_bench.device.AmpHelper`: a step that overflows for one sample is
skipped for that sample only.)

Two more families share this package: :class:`DistillationMethod` (image-encoder tuning towards
the teacher's distribution, KD/DKD/ATKD) and :class:`FrozenViewsMethod` (methods that do not
learn: view features once per sample, no autograd graph; Zero, MTA).

Reset (:class:`ParamSnapshot`) writes back only the tuned tensors in place and clears the
optimizer's state (AdamW then starts from empty moments, as the original's reloaded empty state).

The modules of this package group the pieces by concern; every name is imported from here
(``from rlcf_bench.tta.episode import PromptTuningMethod``):

* :mod:`~rlcf_bench.tta.episode.config` — the tuning, prompt, image, reward and distillation options;
* :mod:`~rlcf_bench.tta.episode.state` — snapshots, the momentum start point, ``trainable``, ``sections``;
* :mod:`~rlcf_bench.tta.episode.tuners` and :mod:`~rlcf_bench.tta.episode.image_tuner` — the tuners;
* :mod:`~rlcf_bench.tta.episode.loop` — :func:`run_episode`;
* :mod:`~rlcf_bench.tta.episode.methods` — the tuning method base classes;
* :mod:`~rlcf_bench.tta.episode.features` — frozen view features (the shared cache or encoded here);
* :mod:`~rlcf_bench.tta.episode.frozen` — the methods that do not learn;
* :mod:`~rlcf_bench.tta.episode.objective_factories` — TPT's and RLCF's objectives for a run.
"""

from __future__ import annotations

from .config import DistillationConfig, ImageTuningConfig, PromptTuningConfig, RewardConfig, TuningConfig
from .features import encode_views, has_view_cache, view_features
from .frozen import FrozenViewsMethod
from .image_tuner import ImageEncoderTuner, image_encoder
from .loop import needs_pixels, run_episode
from .methods import DistillationMethod, ImageTuningMethod, PromptTuningMethod, TuningMethod
from .objective_factories import clip_reward_objective, entropy_objective, reward_text_features, shared_reward_features
from .state import MomentumStart, ParamSnapshot, sections, trainable
from .tuners import PerSampleTuner, PromptTuner, Tuner

__all__ = [
    "DistillationConfig", "DistillationMethod", "FrozenViewsMethod", "ImageEncoderTuner", "ImageTuningConfig",
    "ImageTuningMethod", "MomentumStart", "ParamSnapshot", "PerSampleTuner", "PromptTuner", "PromptTuningConfig",
    "PromptTuningMethod", "RewardConfig", "Tuner", "TuningConfig", "TuningMethod",
    "clip_reward_objective", "encode_views", "entropy_objective", "has_view_cache", "image_encoder", "needs_pixels",
    "reward_text_features", "run_episode", "sections", "shared_reward_features", "trainable", "view_features",
]
