"""First-party tasks: ``classification``, ``retrieval`` and ``captioning``, one module each. Shared
code, public and not plugins (no ``rlcfb_`` hook): ``retrieval_common`` (the gallery, directions and
ranks that retrieval methods share) and ``caption_metrics`` (BLEU, METEOR, ROUGE-L, CIDEr, SPICE,
CLIPScore). The ClipCap/CapDec model and its ``caption`` commands are in ``rlcf_bench_models``."""
