"""Fixed inputs of the per-batch online methods' parity tests (Tent, LAME), shared by the tests
and the recording scripts (``tools/parity/record_tent.py``, ``record_lame.py``).

* Tent: a tiny seeded CNN with two ``BatchNorm2d`` layers (what the official Tent adapts) and a
  stream of 4 batches of 8 seeded 3×8×8 inputs, 5 classes.
* LAME: 3 batches of 16 samples, 6 classes, 10-d features drawn around class means (so the kNN
  graph has structure) and noisy probabilities (a quarter of the arg-maxes wrong).
"""

from __future__ import annotations

from typing import Any

TENT_SEED, TENT_BATCHES, TENT_BATCH, TENT_CLASSES = 3, 4, 8, 5
LAME_SEED, LAME_BATCHES, LAME_BATCH, LAME_CLASSES, LAME_DIM = 5, 3, 16, 6, 10
TENT_DESCRIPTION = (f"tiny CNN (conv-BN-ReLU ×2, pool, linear; seed {TENT_SEED}), {TENT_BATCHES} batches of "
                    f"{TENT_BATCH} seeded 3x8x8 inputs, {TENT_CLASSES} classes, fp32 CPU")
LAME_DESCRIPTION = (f"{LAME_BATCHES} batches of {LAME_BATCH} samples, {LAME_CLASSES} classes, {LAME_DIM}-d features "
                    f"around class means and noisy probabilities (seed {LAME_SEED}), fp32 CPU")


def tent_model() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(TENT_SEED)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, TENT_CLASSES))


def tent_stream() -> Any:
    """``[batches, B, 3, 8, 8]``."""
    import torch

    g = torch.Generator().manual_seed(TENT_SEED + 100)
    return torch.randn(TENT_BATCHES, TENT_BATCH, 3, 8, 8, generator=g)


def norm_params(model: Any) -> Any:
    """The BatchNorm affine parameters, flattened in module order (weight, bias per layer)."""
    import torch
    from torch import nn

    return torch.cat([p.detach().reshape(-1) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                      for p in (m.weight, m.bias)])


def lame_stream() -> tuple[Any, Any]:
    """``(probs [batches, B, C], feats [batches, B, d])``."""
    import torch

    g = torch.Generator().manual_seed(LAME_SEED)
    means = torch.randn(LAME_CLASSES, LAME_DIM, generator=g)
    labels = torch.randint(0, LAME_CLASSES, (LAME_BATCHES, LAME_BATCH), generator=g)
    feats = means[labels] + 0.7 * torch.randn(LAME_BATCHES, LAME_BATCH, LAME_DIM, generator=g)
    logits = 2.0 * torch.nn.functional.one_hot(labels, LAME_CLASSES).float()
    logits = logits + 1.5 * torch.randn(LAME_BATCHES, LAME_BATCH, LAME_CLASSES, generator=g)
    return logits.softmax(-1), feats


#: SAR and ETA filter samples by entropy: the tiny CNN's last layer scaled by 25 spreads the
#: entropies (0.1 to 1.4 nats over the stream) so that their margins select some samples.
SHARP_SCALE = 25.0
ETA_E_MARGIN, ETA_D_MARGIN, ETA_LR = 0.9, 0.75, 0.01
SAR_E_MARGIN, SAR_LR, SAR_ROUNDS = 0.9, 0.3, 5  # the stream played 3 times, so recovery can trigger
SHARP_DESCRIPTION = (f"{TENT_DESCRIPTION}; last layer ×{SHARP_SCALE:g}; ETA E0 {ETA_E_MARGIN}, ε {ETA_D_MARGIN}, "
                     f"lr {ETA_LR}; SAR E0 {SAR_E_MARGIN}, lr {SAR_LR}, the stream {SAR_ROUNDS} times")


def sharp_model() -> Any:
    import torch

    model = tent_model()
    with torch.no_grad():
        model[-1].weight.mul_(SHARP_SCALE)
        model[-1].bias.mul_(SHARP_SCALE)
    return model
