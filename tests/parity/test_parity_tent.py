"""Tent against the official code (DequanWang/tent @ e9e926a), on a tiny BatchNorm CNN.

Golden: the outputs the official ``Tent`` returns per batch and the BatchNorm affine parameters
after each batch, with 1 and 3 steps (``tools/parity/record_tent.py``; inputs
``tests/parity/batch_inputs.py``). Ours: :func:`configure_norms`, :func:`tent_optimizer` with the
method's default config and :func:`forward_and_adapt`, on the same model and stream. Tolerance:
1e-5 on outputs and parameters (fp32, one thread; recorded max |Δ| in ``docs/parity.md``);
identical predictions.
"""

from __future__ import annotations

import pytest
import torch
from batch_inputs import norm_params, tent_model, tent_stream

ATOL = 1e-5


def run_ours(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    from rlcf_bench_baselines.tent import TentConfig, configure_norms, forward_and_adapt, tent_optimizer

    model = tent_model()
    optimizer = tent_optimizer(configure_norms(model), TentConfig(steps=steps))
    outputs, states = [], []
    for x in tent_stream():
        for _ in range(steps):
            out = forward_and_adapt(lambda x=x: model(x), optimizer)
        outputs.append(out)
        states.append(norm_params(model).clone())
    return torch.stack(outputs), torch.stack(states)


@pytest.mark.parametrize("steps", [1, 3])
def test_tent_outputs_and_norm_parameters_are_the_official_ones(steps, golden):
    tensors, meta = golden("tent")
    assert meta["repository"].endswith("DequanWang/tent")
    outputs, states = run_ours(steps)
    torch.testing.assert_close(outputs, tensors[f"steps{steps}_outputs"], rtol=0, atol=ATOL)
    torch.testing.assert_close(states, tensors[f"steps{steps}_norm_params"], rtol=0, atol=ATOL)
    assert torch.equal(outputs.argmax(-1), tensors[f"steps{steps}_outputs"].argmax(-1))
    # the stream moved the parameters: the comparison is not of an unchanged model
    assert float((tensors[f"steps{steps}_norm_params"][-1] - tensors["initial_norm_params"]).abs().max()) > 1e-3


def test_tent_restores_the_shared_model():
    from rlcf_bench_baselines.tent import NormState, TentConfig, configure_norms, forward_and_adapt, tent_optimizer

    model = tent_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    saved = NormState(model)
    optimizer = tent_optimizer(configure_norms(model), TentConfig())
    forward_and_adapt(lambda: model(tent_stream()[0]), optimizer)
    saved.restore()
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
