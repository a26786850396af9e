"""ClipCap/CapDec captioner: frozen CLIP image encoder → normalised prefix → mapper → OPT decoder.

A checkpoint is a folder::

    captioner.json        settings (kind, CLIP model name, mapper sizes, eos policy, TTA defaults)
    mapper.safetensors    the mapping network
    decoder/              OPT in ``save_pretrained`` format (or ``"decoder"`` in the JSON names a
                          local folder / hub name of a pretrained OPT, e.g. OPT-125m)
    tokenizer/            vocab.json + merges.txt (byte-level BPE) or an ``AutoTokenizer`` folder

:class:`ClipCaptioner` exposes ``image_size``/``mean``/``std`` of its CLIP (so tasks preprocess
images for it and the reward model re-normalises from it), beam search with a KV cache
(:meth:`ClipCaptioner.beam_search`) and teacher-forced per-caption losses
(:meth:`ClipCaptioner.caption_losses`) with padding excluded by default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import PreTrainedModel

    from rlcf_bench.session import ComponentSession

from .files import MAPPER_FILE, SETTINGS_FILE, fingerprint
from .mapper import MapperConfig, TransformerMapper

__all__ = ["MAPPER_FILE", "SETTINGS_FILE", "CaptionerSettings", "ClipCaptioner", "fingerprint", "load_captioner",
           "save_captioner", "tiny_opt_config"]
KINDS = ("clipcap", "capdec")


@dataclass
class CaptionerSettings:
    """What ``captioner.json`` holds.

    ``eos``: ``"eos"`` stops generation at the tokenizer's EOS (our BPE tokenizers, trained with an
    EOS appended: ``append_eos``); ``"newline"`` at the token of ``"\\n"`` (OPT-125m, as the
    original). ``tta`` holds model-specific defaults for test-time adaptation (``lr``, ``k``)
    used when a method option is left unset; ``training`` records how the weights were made.
    """

    kind: str
    clip_model: str
    mapper: MapperConfig
    normalize_prefix: bool = True
    eos: str = "eos"
    append_eos: bool = True
    max_new_tokens: int = 50
    decoder: str = "decoder"
    tokenizer: str = "tokenizer"
    noise_variance: float = 0.016
    tta: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["mapper"] = self.mapper.as_dict()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CaptionerSettings:
        d = dict(d)
        d["mapper"] = MapperConfig(**d["mapper"])
        if d.get("kind") not in KINDS:
            raise ValueError(f"captioner kind {d.get('kind')!r}: expected one of {KINDS}")
        return cls(**d)


def tiny_opt_config(vocab_size: int, *, hidden: int = 192, layers: int = 2, heads: int = 4, ffn: int = 384,
                    max_positions: int = 64, pad_id: int = 1, bos_id: int = 2, eos_id: int = 2) -> Any:
    """A small OPT configuration (no dropout) for tests and the micro suite."""
    from transformers import OPTConfig

    config = OPTConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, ffn_dim=ffn,
                       num_attention_heads=heads, max_position_embeddings=max_positions, word_embed_proj_dim=hidden,
                       pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id, dropout=0.0,
                       attention_dropout=0.0, layerdrop=0.0, do_layer_norm_before=True)
    # Not a named OPTConfig parameter in every transformers version (extra keywords become
    # attributes): kept so that saved decoder configs stay as they were.
    config.activation_dropout = 0.0
    return config


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _reorder(cache: Any, index: torch.Tensor) -> Any:
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)  # legacy tuples


class ClipCaptioner:
    """A ClipCap/CapDec model. Only the mapper is ever trainable at test time; the decoder and
    the CLIP are frozen (``requires_grad=False``, eval mode)."""

    def __init__(self, clip: Any, mapper: TransformerMapper, decoder: PreTrainedModel, tokenizer: Any,
                 settings: CaptionerSettings, *, name: str = "captioner", version: str = "1") -> None:
        self.clip = clip
        self.mapper = mapper
        self.decoder = decoder.eval()
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.settings = settings
        self.name = name
        self.version = version
        # ``clip`` may be None while training from precomputed features.
        self.image_size = int(getattr(clip, "image_size", 0))
        self.mean = tuple(getattr(clip, "mean", (0.0, 0.0, 0.0)))
        self.std = tuple(getattr(clip, "std", (1.0, 1.0, 1.0)))
        self.bos_id = int(tokenizer.bos_token_id)
        if settings.eos == "newline":
            ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
            self.eos_id = int(ids[-1])
        else:
            self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)

    # ------------------------------------------------------------------ basics
    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def device(self) -> torch.device:
        return next(self.mapper.parameters()).device

    def to(self, device: Any) -> ClipCaptioner:
        self.mapper.to(device)
        self.decoder.to(device)
        if self.clip is not None and hasattr(self.clip, "to"):
            self.clip.to(device)
        return self

    @property
    def vocab_size(self) -> int:
        return int(self.decoder.get_input_embeddings().weight.shape[0])  # the embedding's rows

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings of normalised images, L2-normalised when the model says so (fp32)."""
        feats = self.clip.encode_image(images.to(self.clip.device)).float()
        return F.normalize(feats, dim=-1) if self.settings.normalize_prefix else feats

    def prefix_embeddings(self, feats: torch.Tensor) -> torch.Tensor:
        """Mapper output ``[B, prefix_length, D]`` for CLIP features ``[B, prefix_dim]``."""
        prefix: torch.Tensor = self.mapper(feats.to(self.device))
        return prefix

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        embedded: torch.Tensor = self.decoder.get_input_embeddings()(ids)
        return embedded

    def encode_captions(self, captions: Sequence[str], max_len: int | None = None,
                        append_eos: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[BOS] + caption (+ EOS)`` ids right-padded with the pad id, and the token mask."""
        append = self.settings.append_eos if append_eos is None else append_eos
        rows = []
        for text in captions:
            ids = [self.bos_id, *self.tokenizer(text, add_special_tokens=False)["input_ids"]]
            if append:
                ids.append(self.eos_id)
            rows.append(ids[:max_len] if max_len else ids)
        length = max(len(r) for r in rows)
        ids_t = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids_t[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids_t, mask

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids if int(i) not in (self.eos_id, self.pad_id, self.bos_id)]
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text.strip()

    # ------------------------------------------------------------------ teacher forcing
    def caption_losses(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, *,
                       pad_quirk: bool = False) -> torch.Tensor:
        """Per-caption next-token cross-entropy ``[N]`` given prefix embeddings ``[N, P, D]``.

        The decoder sees ``prefix ⊕ emb(ids)`` (attention mask: ones on the prefix, ``mask`` on
        the tokens); the logits at positions ``P-1 .. P+L-2`` predict ``ids``. By default padding
        positions are excluded and each caption's loss is the mean over its own tokens.
        ``pad_quirk=True`` reproduces the original TTA code
        (``docs/original-code.md#caption-padding-in-the-loss``): padding targets are
        included and every caption is averaged over the padded length.
        """
        ids, mask = ids.to(prefix.device), mask.to(prefix.device)
        n, p = prefix.shape[:2]
        x = torch.cat([prefix, self.embed_tokens(ids).to(prefix.dtype)], dim=1)
        attn = torch.cat([torch.ones(n, p, dtype=mask.dtype, device=mask.device), mask], dim=1)
        logits = self.decoder(inputs_embeds=x, attention_mask=attn).logits[:, p - 1 : -1].float()
        ce = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
        if pad_quirk:
            return ce.mean(dim=1)
        m = mask.to(ce.dtype)
        return (ce * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def beam_search(self, prefix: torch.Tensor, num_beams: int, num_return: int = 1,
                    max_new_tokens: int | None = None, length_penalty: float = 1.0) -> list[list[list[int]]]:
        """Deterministic beam search from ``prefix ⊕ [BOS]`` with the decoder's KV cache.

        Returns, per image, the ``num_return`` best finished hypotheses (token ids without EOS),
        ranked by ``sum log p / length**length_penalty`` (length counts the EOS). EOS is not allowed
        as the first token (min length 1); a beam still alive at ``max_new_tokens`` is finished
        there. Stops early, per image, once ``num_beams`` hypotheses are finished and no live beam
        can beat the worst of them at the current length (the usual heuristic).
        """
        k = int(num_beams)
        if not 1 <= num_return <= k:
            raise ValueError(f"num_return={num_return} must be in 1..num_beams={k}")
        max_new = int(max_new_tokens or self.settings.max_new_tokens)
        b, p, d = prefix.shape
        dev = prefix.device
        bos = self.embed_tokens(torch.tensor([[self.bos_id]], device=dev)).to(prefix.dtype).expand(b, 1, d)
        x = torch.cat([prefix, bos], dim=1).repeat_interleave(k, dim=0)
        out = self.decoder(inputs_embeds=x, use_cache=True)
        cache = _cache_of(out)
        logp = out.logits[:, -1].float().log_softmax(-1)
        vocab = logp.shape[-1]
        scores = torch.full((b, k), float("-inf"), device=dev)
        scores[:, 0] = 0.0  # all beams start identical: expand from the first only
        seqs = torch.empty(b * k, 0, dtype=torch.long, device=dev)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        done = [False] * b
        base = (torch.arange(b, device=dev) * k).unsqueeze(1)
        for t in range(max_new):
            if t == 0:
                logp[:, self.eos_id] = float("-inf")
            cand = (scores.view(-1, 1) + logp).view(b, k * vocab)
            top_s, top_i = cand.topk(2 * k, dim=1)
            top_beam, top_tok = (top_i // vocab).tolist(), (top_i % vocab).tolist()
            top_list = top_s.tolist()
            new_scores = torch.full((b, k), float("-inf"), device=dev)
            new_beam = torch.zeros(b, k, dtype=torch.long)
            new_tok = torch.full((b, k), self.pad_id, dtype=torch.long)
            seq_cpu = seqs.tolist() if any(not dn for dn in done) else []
            for i in range(b):
                if done[i]:
                    continue
                j = 0
                for s, bi, tok in zip(top_list[i], top_beam[i], top_tok[i]):
                    if s == float("-inf"):
                        break
                    if tok == self.eos_id:
                        finished[i].append((s / (t + 1) ** length_penalty, seq_cpu[i * k + bi]))
                    else:
                        new_scores[i, j], new_beam[i, j], new_tok[i, j] = s, bi, tok
                        j += 1
                        if j == k:
                            break
                finished[i].sort(key=lambda h: -h[0])
                del finished[i][k:]
                if len(finished[i]) >= k:
                    best_live = float(new_scores[i].max()) / (t + 1) ** length_penalty
                    if best_live <= finished[i][-1][0]:
                        done[i] = True
            if all(done):
                break
            index = (base + new_beam.to(dev)).view(-1)
            seqs = torch.cat([seqs[index], new_tok.to(dev).view(-1, 1)], dim=1)
            scores = new_scores
            if t == max_new - 1:
                break
            cache = _reorder(cache, index)
            out = self.decoder(input_ids=new_tok.to(dev).view(-1, 1), past_key_values=cache, use_cache=True)
            cache = _cache_of(out)
            logp = out.logits[:, -1].float().log_softmax(-1)
        else:
            pass
        seq_cpu = seqs.tolist()
        length = seqs.shape[1]
        for i in range(b):
            if done[i]:
                continue
            for j in range(k):  # live beams at the length limit become hypotheses
                s = float(scores[i, j])
                if s != float("-inf"):
                    finished[i].append((s / max(1, length) ** length_penalty, seq_cpu[i * k + j]))
            finished[i].sort(key=lambda h: -h[0])
        return [[h[1] for h in finished[i][:num_return]] for i in range(b)]

    def generate(self, prefix: torch.Tensor, num_beams: int = 5, num_return: int = 1,
                 max_new_tokens: int | None = None, *, lower: bool = True) -> list[list[str]]:
        """Beam search and decode: per image, ``num_return`` captions, best first, lower-cased
        unless ``lower=False`` (the original lower-cases its final caption only; RLCF's candidates
        keep their case, which the teacher-forced loss re-tokenises)."""
        hyps = self.beam_search(prefix, num_beams, num_return, max_new_tokens)
        return [[self.decode(h).lower() if lower else self.decode(h) for h in row] for row in hyps]

    def caption(self, images: torch.Tensor, num_beams: int = 5, max_new_tokens: int | None = None) -> list[str]:
        """One caption per normalised image (no adaptation)."""
        with torch.no_grad():
            prefix = self.prefix_embeddings(self.encode_images(images))
            return [row[0] for row in self.generate(prefix, num_beams, 1, max_new_tokens)]


# --------------------------------------------------------------------------------------------
# Saving and loading checkpoint folders
# --------------------------------------------------------------------------------------------


def save_captioner(folder: str | Path, settings: CaptionerSettings, mapper: nn.Module, decoder: Any | None,
                   tokenizer_dir: str | Path | None) -> Path:
    """Write a checkpoint folder (see the module docstring)."""
    import shutil

    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in mapper.state_dict().items()}, str(out / MAPPER_FILE))
    if decoder is not None:
        decoder.save_pretrained(str(out / "decoder"), safe_serialization=True)
        settings.decoder = "decoder"
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != (out / "tokenizer").resolve():
        shutil.copytree(tokenizer_dir, out / "tokenizer", dirs_exist_ok=True)
        settings.tokenizer = "tokenizer"
    (out / SETTINGS_FILE).write_text(json.dumps(settings.to_json(), indent=1, sort_keys=True) + "\n")
    return out


def _resolve(folder: Path, ref: str) -> str:
    local = folder / ref
    return str(local) if local.exists() else ref


def load_captioner(folder: str | Path, device: Any = "cpu", *, name: str | None = None,
                   clip: Any = None, session: ComponentSession | None = None) -> ClipCaptioner:
    """Load a checkpoint folder. ``clip`` overrides the CLIP named in ``captioner.json``; without
    it, ``session`` (the run's component session) loads that CLIP, with the session's plugins."""
    from safetensors.torch import load_file
    from transformers import OPTForCausalLM

    from rlcf_bench.quiet import quiet_transformers

    from .tokenizer import load_tokenizer

    quiet_transformers()

    folder = Path(folder).expanduser()
    if not (folder / SETTINGS_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a captioner checkpoint: no {SETTINGS_FILE} "
                                "(train one with `rlcf-bench caption train`)")
    settings = CaptionerSettings.from_json(json.loads((folder / SETTINGS_FILE).read_text()))
    device = torch.device(device) if device is not None else torch.device("cpu")
    if clip is None:
        if session is None:
            raise ValueError(f"{folder}: pass clip= or session= to load the captioner's CLIP ({settings.clip_model})")
        clip = session.model(settings.clip_model)
        trained_on = settings.training.get("clip_version")
        if trained_on and str(getattr(clip, "version", "")) != trained_on:
            import warnings

            warnings.warn(f"{folder}: trained on {settings.clip_model} version {trained_on}, but the loaded one is "
                          f"version {getattr(clip, 'version', '?')}: retrain the captioner", stacklevel=2)
    mapper = TransformerMapper(settings.mapper)
    mapper.load_state_dict(load_file(str(folder / MAPPER_FILE)), strict=True)
    for p in mapper.parameters():
        p.requires_grad_(False)
    decoder = OPTForCausalLM.from_pretrained(_resolve(folder, settings.decoder), local_files_only=True)
    tokenizer = load_tokenizer(_resolve(folder, settings.tokenizer))
    model = ClipCaptioner(clip, mapper.eval(), decoder, tokenizer, settings, name=name or str(folder),
                          version=fingerprint(folder))
    return model.to(device)
