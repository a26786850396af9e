"""Model backends and the CLIP reward.

Plugins (each module that defines a hook): ``open_clip_backend`` (open_clip tags and local checkpoint
files), ``hf_backend`` (``hf:/dir``, a Hugging Face ``CLIPModel``), ``prefix_captioners`` (ClipCap and
CapDec checkpoint folders, kind ``captioner``) and ``clip_reward`` (the CLIP-score reward of any model
or ensemble), ``clipcap_commands`` (``rlcf-bench caption ...``: features and training of a captioner).
``_formats`` detects and safely reads checkpoint files and ``_clipcap/`` is the ClipCap/CapDec model,
tokenizer and trainer (not plugins; ``_clipcap`` imports torch, so discovery does not scan it). The tiny random
models for tests live in ``rlcf_bench_fixtures``.
"""
