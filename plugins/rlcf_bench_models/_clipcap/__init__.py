"""The ClipCap/CapDec captioner (``docs/original-code.md#captioning-episode``): model, tokenizer,
features and training. Shared by the captioner loader (``prefix_captioners``), the ``caption``
commands (``clipcap_commands``), the micro suite's captioner and the test fixtures. The leading
underscore keeps plugin discovery from importing it (its modules import torch at module level);
the caption metrics are the task's (``rlcf_bench_tasks.caption_metrics``).

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
"""
