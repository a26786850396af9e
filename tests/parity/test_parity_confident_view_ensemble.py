"""confident-view-ensemble (plugins/rlcf-bench-example) has no official code: it is this project's
own example. Its parity test compares it, per sample, with an independent computation in float64
from the fixed features (``episodic_inputs.py``): the entropy of each view's softmax, the 6 views
of lowest entropy, the mean of their probabilities and view 0's (``include_view0``, default) or of
theirs alone. Tolerance 1e-6 on the probabilities (fp32 against float64); identical predictions.
"""

from __future__ import annotations

import pytest
import torch
from episodic_inputs import SELECTION_RATIO, fixed_features, logit_scale, run_method


def by_hand(include_view0: bool) -> torch.Tensor:
    text, views = fixed_features()
    t = text.double() / text.double().norm(dim=-1, keepdim=True)
    f = views.double() / views.double().norm(dim=-1, keepdim=True)
    probs = (logit_scale() * f @ t.T).softmax(-1)  # [N, V, C]
    entropy = -(probs * probs.log()).sum(-1)
    n = int(SELECTION_RATIO * views.shape[1])
    out = []
    for p, h in zip(probs, entropy):
        chosen = sorted(range(len(h)), key=lambda v: float(h[v]))[:n]
        rows = ([0] if include_view0 else []) + chosen
        out.append(p[rows].mean(0))
    return torch.stack(out)


@pytest.mark.parametrize(("include_view0", "batch_size"), [(True, 4), (True, 1), (False, 4)])
def test_confident_view_ensemble_is_the_independent_computation(include_view0, batch_size):
    from rlcf_bench_example.confident_view_ensemble import ConfidentViewEnsemble

    expected = by_hand(include_view0)
    got = run_method(ConfidentViewEnsemble, {"include_view0": include_view0}, batch_size=batch_size)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    assert not torch.allclose(by_hand(True), by_hand(False), atol=1e-3)  # the option matters on these inputs
