"""zero-shot (classification) against mzhaoshuai/RLCF ``TPT/zero_shot.py`` (``CLIPCLS_TTA`` with
prompt prefix "a_photo_of_a"): the logits of the eight centre crops, in batches of 1 and 4
(``tools/parity/record_image_tuning.py``; docs/parity.md)."""

from __future__ import annotations

import pytest
from tpt_family_harness import assert_matches, described, run_method

#: no tuning: the same features up to float rounding (measured ≤ 2e-5)
ZERO_SHOT_ATOL = 1e-4


@pytest.mark.parametrize("batch_size", [1, 4])
def test_zero_shot_matches_official(golden, tiny_official_clip, batch_size):
    from rlcf_bench_baselines.zero_shot import ZeroShotClassification

    tensors, meta = golden("zero_shot")
    ours = run_method(ZeroShotClassification, described(meta)["options"], tiny_official_clip, meta, batch_size)
    assert_matches(ours, tensors, logits_atol=ZERO_SHOT_ATOL)


def test_zero_shot_default_prompt_departs(golden, tiny_official_clip):
    """Our default prompt is "a photo of a <class>."; the official literal "a_photo_of_a <class>."
    needs ``-m underscore_prompt=true`` (the golden's options)."""
    from rlcf_bench_baselines.zero_shot import ZeroShotClassification

    tensors, meta = golden("zero_shot")
    ours = run_method(ZeroShotClassification, {}, tiny_official_clip, meta, 8)
    assert (ours.logits - tensors["logits"]).abs().max() > 100 * ZERO_SHOT_ATOL
