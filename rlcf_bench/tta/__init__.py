"""The test-time adaptation toolkit that method plugins build on.

The host's core (hookspecs, types, plugin manager, registries, session, runner, store, reports,
CLI) knows no method; methods are plugins, and these modules are what they share:

* :mod:`~rlcf_bench.tta.episode` — the episode (confident-view selection, steps, prediction),
  tuners (prompt context, per-sample tensors, the image tower batched over samples) and the
  method base classes (tuning, distillation, frozen views);
* :mod:`~rlcf_bench.tta.objectives` — entropy, CLIP reward, distillation objectives;
* :mod:`~rlcf_bench.tta.logits` — class logits ``s · cos + b`` (CLIP and SigLIP) under the
  protocol's ``probability`` (softmax or SigLIP's sigmoid);
* :mod:`~rlcf_bench.tta.prompt_learner`, :mod:`~rlcf_bench.tta.prompts` — CoOp-style prompt
  contexts and class prompts;
* :mod:`~rlcf_bench.tta.views` — the protocol's test-time views (crops, AugMix);
* :mod:`~rlcf_bench.tta.reward` — the CLIP reward model over one or several scorers;
* :mod:`~rlcf_bench.tta.vlm`, :mod:`~rlcf_bench.tta.hf_vlm` — open_clip and Hugging Face CLIP
  wrappers with one interface;
* :mod:`~rlcf_bench.tta.cache`, :mod:`~rlcf_bench.tta.online` — what the online (cache-based)
  methods share.

Nothing here is imported by the core at module level, and importing this package does not import
torch.
"""
