"""SAR and ETA against the official code (mr-eggplant/SAR @ 20f6e24, mr-eggplant/EATA @ f739b36),
on the sharpened tiny BatchNorm CNN of ``batch_inputs.py``.

Golden (``tools/parity/record_sar.py``, ``record_eta.py``): per batch, the outputs the official
method returns and the BatchNorm affine parameters after the batch; SAR's moving average of the
second loss (NaN: none), over a stream played 5 times so that the official model recovery runs;
ETA's moving average of the selected softmaxes and its counts of reliable and selected samples.
Ours: :func:`sar_step` with :class:`SAM`, :func:`eta_step`, and the methods' recovery rule.
Tolerance 1e-5 (fp32, one thread); identical predictions.
"""

from __future__ import annotations

import math

import torch
from batch_inputs import (
    ETA_D_MARGIN,
    ETA_E_MARGIN,
    ETA_LR,
    SAR_E_MARGIN,
    SAR_LR,
    SAR_ROUNDS,
    norm_params,
    sharp_model,
    tent_stream,
)

ATOL = 1e-5


def run_sar(keep_ema_on_reset: bool) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    from rlcf_bench_baselines._norm_tuning import configure_norms
    from rlcf_bench_baselines.sar import SAM, sar_step

    model = sharp_model()
    params = configure_norms(model)
    initial = [p.detach().clone() for p in params]
    optimizer = SAM(params, torch.optim.SGD, lr=SAR_LR, momentum=0.9)
    ema: float | None = None
    outputs, states, emas = [], [], []
    for _ in range(SAR_ROUNDS):
        for x in tent_stream():
            out, ema, reset = sar_step(lambda x=x: model(x), optimizer, SAR_E_MARGIN, ema)
            if reset:  # as Sar.step
                with torch.no_grad():
                    for p, p0 in zip(params, initial):
                        p.copy_(p0)
                ema = ema if keep_ema_on_reset else None
            outputs.append(out)
            states.append(norm_params(model).clone())
            emas.append(math.nan if ema is None else ema)
    return torch.stack(outputs), torch.stack(states), emas


def test_sar_with_the_official_recovery_quirk_is_the_official_run(golden):
    tensors, meta = golden("sar")
    assert meta["repository"].endswith("mr-eggplant/SAR")
    outputs, states, emas = run_sar(keep_ema_on_reset=True)
    torch.testing.assert_close(outputs, tensors["outputs"], rtol=0, atol=ATOL)
    torch.testing.assert_close(states, tensors["norm_params"], rtol=0, atol=ATOL)
    torch.testing.assert_close(torch.tensor(emas, dtype=torch.float64), tensors["ema"], rtol=0, atol=ATOL)
    assert torch.equal(outputs.argmax(-1), tensors["outputs"].argmax(-1))
    assert bool((tensors["ema"] < 0.2).any())  # the recovery ran in the official stream


def test_sar_default_clears_the_average_on_recovery_and_so_departs_after_the_first_reset(golden):
    tensors, _ = golden("sar")
    first = int(torch.nonzero(tensors["ema"] < 0.2)[0])
    outputs, _, emas = run_sar(keep_ema_on_reset=False)
    torch.testing.assert_close(outputs[: first + 1], tensors["outputs"][: first + 1], rtol=0, atol=ATOL)
    assert math.isnan(emas[first]) and not math.isnan(float(tensors["ema"][first]))


def test_eta_is_the_official_run(golden):
    from rlcf_bench_baselines._norm_tuning import configure_norms
    from rlcf_bench_baselines.eta import eta_step

    tensors, meta = golden("eta")
    assert meta["repository"].endswith("mr-eggplant/EATA")
    model = sharp_model()
    optimizer = torch.optim.SGD(configure_norms(model), ETA_LR, momentum=0.9)
    average = None
    outputs, states, averages, selected = [], [], [], []
    for x in tent_stream():
        out, average, n = eta_step(lambda x=x: model(x), optimizer, ETA_E_MARGIN, ETA_D_MARGIN, average)
        outputs.append(out)
        states.append(norm_params(model).clone())
        averages.append(average.clone())
        selected.append(n)
    torch.testing.assert_close(torch.stack(outputs), tensors["outputs"], rtol=0, atol=ATOL)
    torch.testing.assert_close(torch.stack(states), tensors["norm_params"], rtol=0, atol=ATOL)
    torch.testing.assert_close(torch.stack(averages), tensors["averages"], rtol=0, atol=ATOL)
    assert selected == tensors["counts"][:, 1].tolist()
    assert 0 < sum(selected) < int(tensors["counts"][:, 0].sum())  # both filters removed some samples
