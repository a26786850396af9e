"""Class-agnostic learnable prompt context (CoOp/TPT style) for a batch of independent samples.

The prompt of class ``c`` is ``[SOS] ⊕ ctx ⊕ suffix_c`` where ``ctx`` is ``n_ctx`` learnable
token embeddings initialised from the words of ``ctx_init`` ("a photo of a" → 4 tokens), and
``suffix_c`` are the frozen embeddings of "<class name>." and the end-of-text token
(``docs/original-code.md#prompt-learner``). A tokenizer without a start token (SigLIP's
sentencepiece) has no ``[SOS]``: the leading special tokens are whatever ``tokenize("")`` puts
before its end token, zero or one.

A text tower without a causal mask (SigLIP's: every position attends to every other, padding
included, and the feature is pooled at the last position) is run over the full context length:
nothing can be cut there without changing the features (``docs/siglip.md``).

What is done once per run (and cached in ``ctx.cache``): tokenising the C prompts, embedding
them, splitting the fixed prefix/suffix, and truncating them to the longest end-of-text position
(exact under the causal mask; :meth:`rlcf_bench.tta.vlm.OpenClipVLM.encode_text_embeddings`). What is
done per step: splicing a ``[B, n_ctx, D]`` context — one per test sample — into ``B·C`` prompts
and running the text tower over ``L ≪ 77`` positions.

``coop=PATH`` loads learned context vectors: ``torch.load(PATH, weights_only=True)`` and
``['state_dict']['ctx']`` (a CoOp checkpoint as the original's ``--load``) or a top-level
``'ctx'``; the shape must be ``(n_ctx, D)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..lazy import LazyModule

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)
F: Any = LazyModule("torch.nn.functional")


class PromptLearner:
    """Frozen prompt pieces for one (model, ``ctx_init``, class list); holds no parameters.

    The learnable context belongs to whoever tunes it (``[B, n_ctx, D]``, one row per sample):
    this object only turns a context into normalised class text features ``[B, C, E]``.
    """

    def __init__(self, model: Any, classnames: Sequence[str], *, ctx_init: str = "a photo of a",
                 coop: str | None = None, device: torch.device | None = None) -> None:
        tower = model.text_tower
        if tower is None:
            raise TypeError(f"prompt tuning needs a text tower that runs from token embeddings; "
                            f"{getattr(model, 'name', model)!r} has none")
        self.model = model
        device = device or model.device
        self.ctx_init = ctx_init.replace("_", " ")
        names = [c.replace("_", " ") for c in classnames]
        #: the hand-crafted prompts (the initial state; also the reward model's class texts).
        self.prompts = [f"{self.ctx_init} {n}." for n in names]
        init_tokens = model.tokenize([self.ctx_init]).to(device)
        self.n_prefix, self.n_ctx = context_span(model.tokenize([""])[0], init_tokens[0].cpu())
        if self.n_ctx < 1:
            raise ValueError(f"ctx_init={ctx_init!r} has no tokens")
        tokens = model.tokenize(self.prompts).to(device)
        span = slice(self.n_prefix, self.n_prefix + self.n_ctx)
        if not torch.equal(tokens[:, span], init_tokens[:, span].expand(len(names), -1)):
            raise ValueError(f"ctx_init={ctx_init!r} does not tokenise the same inside the class prompts")
        self.pool_idx = tower.pool_index(tokens)
        # causal: cut after the last pooled position (exact); bidirectional: the full context
        length = int(self.pool_idx.max()) + 1 if tower.truncatable else tokens.shape[1]
        with torch.no_grad():
            emb = tower.token_embedding(tokens[:, :length])
        self.prefix = emb[:, : self.n_prefix].clone()  # [C, 0 or 1, D]: start-of-text
        self.suffix = emb[:, span.stop :].clone()  # [C, L-prefix-n_ctx, D]: class tokens, ".", EOT, padding
        init = emb[0, span].clone()
        if coop:
            init = load_coop_context(coop, self.n_ctx, init.shape[-1]).to(device=init.device, dtype=init.dtype)
        self.init_ctx = init  # [n_ctx, D]
        self.n_classes = len(names)
        self.length = length

    def initial_context(self, batch_size: int) -> torch.Tensor:
        """A fresh ``[B, n_ctx, D]`` copy of the initial context."""
        return self.init_ctx.unsqueeze(0).expand(batch_size, -1, -1).clone()

    def embeddings(self, ctx: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B·C, L, D]`` of every class prompt under each sample's context."""
        b, c = ctx.shape[0], self.n_classes
        d = self.prefix.shape[-1]
        x = torch.cat([
            self.prefix.unsqueeze(0).expand(b, c, self.n_prefix, d),
            ctx.to(self.prefix.dtype).unsqueeze(1).expand(b, c, self.n_ctx, d),
            self.suffix.unsqueeze(0).expand(b, c, -1, d),
        ], dim=2)
        return x.reshape(b * c, self.length, d)

    def text_features(self, ctx: torch.Tensor) -> torch.Tensor:
        """L2-normalised fp32 class features ``[B, C, E]`` for contexts ``[B, n_ctx, D]``."""
        b = ctx.shape[0]
        feats = self.model.encode_text_embeddings(self.embeddings(ctx), self.pool_idx.repeat(b), self.length)
        return F.normalize(feats.float(), dim=-1).view(b, self.n_classes, -1)


def context_span(empty: torch.Tensor, init: torch.Tensor) -> tuple[int, int]:
    """``(n_prefix, n_ctx)``: how many leading special tokens precede ``ctx_init``'s words, and how
    many tokens those words are, from the token ids of ``""`` (``empty``) and of ``ctx_init``
    (``init``). The prefix is where both agree from the start (CLIP's start token; nothing for
    SigLIP's sentencepiece); the words end at the first later position holding the token that
    follows the prefix in ``empty`` (the end-of-text token)."""
    n_prefix = 0
    while n_prefix < min(len(empty), len(init)) - 1 and int(empty[n_prefix]) == int(init[n_prefix]):
        n_prefix += 1
    end_token = int(empty[n_prefix])
    rest = (init[n_prefix:] == end_token).nonzero()
    end = n_prefix + int(rest[0]) if len(rest) else len(init)
    return n_prefix, end - n_prefix


def load_coop_context(path: str | Path, n_ctx: int, dim: int) -> torch.Tensor:
    """Learned class-agnostic context ``(n_ctx, dim)`` from a CoOp checkpoint (safe loading)."""
    obj = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "ctx" not in obj:
        raise ValueError(f"{path}: expected a CoOp checkpoint with state_dict['ctx'] (or a top-level 'ctx')")
    ctx = obj["ctx"]
    if tuple(ctx.shape) != (n_ctx, dim):
        raise ValueError(f"{path}: CoOp context has shape {tuple(ctx.shape)}, expected ({n_ctx}, {dim}) "
                         f"(class-agnostic, n_ctx matching ctx_init)")
    return ctx.float()


def prompt_learner_for(ctx: Any, *, ctx_init: str = "a photo of a", coop: str | None = None) -> PromptLearner:
    """The run's prompt learner for the policy and class list, built once and cached."""
    key = ("prompt_learner", ctx.vlm.name, ctx_init, coop, tuple(ctx.classnames))
    if key not in ctx.cache:
        ctx.cache[key] = PromptLearner(ctx.vlm, ctx.classnames, ctx_init=ctx_init, coop=coop, device=ctx.device)
    return ctx.cache[key]  # type: ignore[no-any-return]
