"""CLIP reward: ``R(image, text) = sum_j w_j * 2.5 * max(0, <F_j(image), G_j(text)>)``.

One frozen model (the paper's ViT-L/14) or a weighted ensemble (RLCF-S). Each member clamps its
own score before weighting, as the original code does
(``docs/original-code.md#reward-ensemble-rlcf-s``). Images arrive normalised for
the policy at the policy's resolution; each member re-expresses them for itself (bicubic,
``align_corners=True``, ``docs/original-code.md#reward-image-resolution``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .logits import logit_bias_of
from .views import adapt_normalisation
from .vlm import OpenClipVLM

CLIPSCORE_WEIGHT = 2.5


class CLIPReward:
    def __init__(self, members: Sequence[tuple[OpenClipVLM, float]], *, name: str,
                 policy_mean: Sequence[float], policy_std: Sequence[float]) -> None:
        if not members:
            raise ValueError("a reward model needs at least one member")
        self.name = name
        self.members = [m for m, _ in members]
        self.weights = [float(w) for _, w in members]
        self.policy_mean = tuple(policy_mean)
        self.policy_std = tuple(policy_std)

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """L2-normalised fp32 features per member of policy-normalised images ``[N, 3, S, S]``."""
        out = []
        for m in self.members:
            x = adapt_normalisation(images.float(), src_mean=self.policy_mean, src_std=self.policy_std,
                                    dst_mean=m.mean, dst_std=m.std, size=m.image_size)
            out.append(F.normalize(m.encode_image(x.to(m.device)).float(), dim=-1))
        return out

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> list[torch.Tensor]:
        return [m.text_features(texts) for m in self.members]

    @torch.no_grad()
    def score(self, image_feats: Sequence[torch.Tensor], text_feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Element-wise reward of aligned pairs: ``image_feats[j][n]`` with ``text_feats[j][n]``."""
        total = None
        for w, fi, ft in zip(self.weights, image_feats, text_feats):
            s = w * CLIPSCORE_WEIGHT * (fi * ft.to(fi.device)).sum(-1).clamp(min=0)
            total = s if total is None else total + s.to(total.device)
        assert total is not None
        return total

    @torch.no_grad()
    def class_logits(self, image_feats: Sequence[torch.Tensor], text_feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher logits ``[N, C]`` of images against all class texts: ``sum_j w_j · (s_j · F_j G_jᵀ + b_j)``
        with ``s_j`` member j's own logit scale (100 for OpenAI CLIPs) and ``b_j`` its logit bias
        (a SigLIP's; 0 for a CLIP). With one member of weight 1
        these are that CLIP's zero-shot logits, the distillation teacher of the RLCF paper; an
        ensemble's logits are the weighted sum of its members'."""
        total = None
        for w, m, fi, ft in zip(self.weights, self.members, image_feats, text_feats):
            z = (w * m.logit_scale) * fi @ ft.to(fi.device).t()
            bias = logit_bias_of(m)
            if bias:  # a CLIP member's logits keep their exact bits
                z = z + w * bias
            total = z if total is None else total + z.to(total.device)
        assert total is not None
        return total
