"""Cross-domain image captioning (``docs/original-code.md#captioning-episode``): ClipCap/CapDec
models, tokenizers, training, metrics.

Submodules (each imports torch/transformers itself; this package stays cheap to import):

* :mod:`.mapper` — the prefix-mapping transformer (``TransformerMapper``,
  ``docs/original-code.md#captioning-model``).
* :mod:`.model` — :class:`~.model.ClipCaptioner`: frozen CLIP image encoder → normalised prefix →
  mapper → prefix embeddings → OPT decoder (``inputs_embeds``); beam search with a KV cache;
  teacher-forced per-caption losses with padding excluded (or the original's quirk).
* :mod:`.tokenizer` — byte-level BPE trained offline with ``tokenizers`` and loaded by
  ``GPT2TokenizerFast(vocab=..., merges=...)``.
* :mod:`.features` — the original's feature dictionary (pickle) and its extraction from images.
* :mod:`.train` — seeded, resumable training (safetensors checkpoints + JSON state).
* :mod:`.metrics` — BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, PTB tokenisation), SPICE when
  available, CLIPScore and RefCLIPScore.
"""
