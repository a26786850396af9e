"""The tuners' AdamW (``rlcf_bench.tta.optim``): fused on the CPU, and the same update as torch's
default implementation up to float rounding."""

from __future__ import annotations

import pytest
import torch

from rlcf_bench.tta.optim import adamw, fused_on


def _tensors(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 64, 3, 3), (64,), (512, 512), (), (5, 512)]
    return [torch.randn(s, generator=g) for s in shapes]


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_the_fused_update_is_torchs_default_update_up_to_rounding(weight_decay: float) -> None:
    start, grads = _tensors(0), [[g * 10.0 ** -k for g in _tensors(1 + k)] for k in range(3)]
    fused = [torch.nn.Parameter(t.clone()) for t in start]
    loop = [torch.nn.Parameter(t.clone()) for t in start]
    opt_fused = adamw(fused, lr=1e-3, weight_decay=weight_decay, eps=1e-6)
    opt_loop = torch.optim.AdamW(loop, lr=1e-3, weight_decay=weight_decay, eps=1e-6)  # CPU default: the loop
    assert opt_fused.defaults["fused"] and not opt_loop.defaults["fused"]
    for step_grads in grads:  # gradients over three orders of magnitude, three steps
        for params, opt in ((fused, opt_fused), (loop, opt_loop)):
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()
    for a, b, s in zip(fused, loop, start):
        assert not torch.equal(a.detach(), s)  # the parameters moved (about 3 lr)
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6 * max(1.0, float(s.abs().max())))


def test_fused_only_for_cpu_floating_point_tensors() -> None:
    assert fused_on([torch.zeros(3), torch.zeros(())])
    assert not fused_on([])
    assert not fused_on([torch.zeros(3, dtype=torch.int64)])
    meta = torch.zeros(3, device="meta")
    assert not fused_on([torch.zeros(3), meta])
    assert not adamw([torch.nn.Parameter(meta)], lr=1e-3, weight_decay=0).defaults["fused"]  # torch's own choice
