"""TTL against TTA-VLM's port (``instance_method/ttl.py`` with ``ClipLoraTestTimeTuning_v2``) on the
tiny CLIP (golden/ttl.safetensors, ``tools/parity/record_ttl.py``): adapters on both blocks of the
tiny ViT (the port's last three of ViT-B/16), the port's own ``A`` initialisation injected, 1 and 2
steps. Per sample: the logits of view 0 under the adapted tower; the adapters ``A``, ``B`` after
the episode (first two samples)."""

from __future__ import annotations

import pytest
import torch

#: logits |z| ≤ 100·2: fp32 rounding of the folded adapters (W + 2·(AB)ᵀ vs W x + 2·B(A x)) and of
#: open_clip's attention against the port's re-implementation, through one or two Adam steps
LOGITS_ATOL = 1e-3
#: Adam divides by √v: at the second step, where A first gets a gradient, an element whose gradient
#: is near rounding level moves by up to ±lr·(its rounding); measured 8.3e-5 on A (2 of 8,192
#: elements above 1e-5), 5.4e-6 on B, logits 4.0e-4 / 4.9e-4 after 1 / 2 steps
ADAPTER_ATOL = 2e-4


def _run(helper, a_init, steps):
    from episodic_inputs import PROMPT_CLASSNAMES, SEED, TEMPLATE, batches, prompt_views

    from rlcf_bench.device import AmpHelper
    from rlcf_bench.types import MethodContext, RunProtocol
    from rlcf_bench_baselines.ttl import TTL, TTLConfig

    device = torch.device("cpu")
    ctx = MethodContext(task="classification", protocol=RunProtocol(seed=SEED, n_views=64, precision="fp32"),
                        device=device, amp=AmpHelper(device, "fp32"), model=helper.tiny_vlm(),
                        classnames=PROMPT_CLASSNAMES, templates=(TEMPLATE,), dataset="parity")
    method = TTL(TTLConfig(blocks=2, steps=steps))
    method.setup(ctx)
    assert [tuple(a.shape) for a in method.a_init] == [tuple(a.shape) for a in a_init]
    method.a_init = [a.clone() for a in a_init]
    logits, adapters = [], []
    for batch in batches(prompt_views(helper), 1):
        method.reset()
        method.adapt(batch)
        logits.append(method.predict(batch).logits[0])
        adapters.append((torch.stack([a.detach().clone() for a in method.a]),
                         torch.stack([b.detach().clone() for b in method.b])))
    return torch.stack(logits), adapters


@pytest.mark.parametrize("steps", [1, 2])
def test_ttl_adapts_as_the_official_port(steps, golden, tiny_official_clip):
    g, meta = golden("ttl")
    assert meta["repository"] == "TomSheng21/tta-vlm"
    logits, adapters = _run(tiny_official_clip, list(g["a_init"]), steps)
    expected = g[f"logits_steps{steps}"]
    torch.testing.assert_close(logits, expected, rtol=0, atol=LOGITS_ATOL)
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))
    for i in range(g[f"b_steps{steps}"].shape[0]):
        a, b = adapters[i]
        torch.testing.assert_close(b, g[f"b_steps{steps}"][i], rtol=0, atol=ADAPTER_ATOL)
        torch.testing.assert_close(a, g[f"a_steps{steps}"][i], rtol=0, atol=ADAPTER_ATOL)


def test_an_episode_moves_the_prediction(golden, tiny_official_clip):
    """The comparison above is not of the frozen model with itself: one step moves the official
    logits away from zero-shot's by far more than the tolerance (recorded: 7.5 after 1 step, 14.8
    after 2)."""
    import torch.nn.functional as F
    from episodic_inputs import PROMPT_CLASSNAMES, TEMPLATE, prompt_views

    g, _meta = golden("ttl")
    vlm = tiny_official_clip.tiny_vlm()
    with torch.no_grad():
        image = F.normalize(vlm.image_features(prompt_views(tiny_official_clip)[:, 0]), dim=-1)
        text = F.normalize(vlm.text_features([TEMPLATE.format(c) for c in PROMPT_CLASSNAMES]), dim=-1)
    zero_shot = float(vlm.logit_scale) * image @ text.t()
    for steps in (1, 2):
        assert float((g[f"logits_steps{steps}"] - zero_shot).abs().max()) > 1000 * LOGITS_ATOL
