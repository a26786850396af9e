"""Decoder tokenizers that work offline.

* :func:`train_bpe` trains a byte-level BPE (GPT-2/OPT style) with the ``tokenizers`` library on
  the given captions and writes ``vocab.json`` + ``merges.txt`` (+ ``special_tokens.json``).
  Special tokens follow OPT's ids: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2 (BOS = EOS, as in OPT),
  ``<unk>`` 3.
* :func:`load_tokenizer` loads such a folder with ``GPT2TokenizerFast(vocab=..., merges=...)``
  (never ``vocab_file=``: transformers 5 accepts it silently and yields empty ids), or any folder
  ``AutoTokenizer`` understands (a local OPT-125m), and checks that encoding yields ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
SPECIAL_ORDER = ("<s>", "<pad>", "</s>", "<unk>")


def train_bpe(captions: Iterable[str], out_dir: str | Path, vocab_size: int = 512, min_frequency: int = 2) -> Path:
    """Train a byte-level BPE on ``captions`` and save it in ``out_dir`` (created)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_ORDER),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(sorted(set(captions)), trainer)  # sorted: independent of the input order
    tok.model.save(str(out))
    (out / "special_tokens.json").write_text(json.dumps(SPECIAL_TOKENS, indent=1) + "\n")
    return out


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#version"):
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    return merges


def load_tokenizer(path: str | Path) -> Any:
    """A fast tokenizer from ``path`` (vocab.json + merges.txt, or an ``AutoTokenizer`` folder)."""
    folder = Path(path)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file() and not (folder / "tokenizer_config.json").is_file():
        from transformers import GPT2TokenizerFast

        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        special = SPECIAL_TOKENS
        if (folder / "special_tokens.json").is_file():
            special = json.loads((folder / "special_tokens.json").read_text())
        tok = GPT2TokenizerFast(vocab=vocab, merges=_read_merges(folder / "merges.txt"), **special)
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if not tok("a photo")["input_ids"]:
        raise RuntimeError(f"tokenizer at {folder} encodes text to no ids (a vocab_file= pitfall?)")
    return tok
