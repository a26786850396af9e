"""Model backends and the CLIP reward.

Plugins (each module that defines a hook): ``open_clip_backend`` (open_clip tags and local checkpoint
files), ``hf_backend`` (``hf:/dir``, a Hugging Face ``CLIPModel``), ``prefix_captioners`` (ClipCap and
CapDec checkpoint folders, kind ``captioner``) and ``clip_reward`` (the CLIP-score reward of any model
or ensemble). ``_formats`` detects and safely reads checkpoint files (not a plugin). The tiny random
models for tests live in ``rlcf_bench_fixtures``.
"""
