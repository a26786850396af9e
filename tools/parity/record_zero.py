"""Record Zero's golden votes from the official code (FarinaMatteo/zero).

    git clone https://github.com/FarinaMatteo/zero /tmp/official-zero
    git -C /tmp/official-zero checkout c609f7c27bd83a9c898c5bb0256f8272e4d973e3
    PYTHONPATH=<setuptools<70> .venv/bin/python tools/parity/record_zero.py --official /tmp/official-zero

The official ``clip.clip`` imports ``pkg_resources`` (``pip install --target DIR "setuptools<70"``
and put DIR on PYTHONPATH). The official ``Zero.zero`` runs unchanged on the fixed inputs of
``tests/parity/episodic_inputs.py``; only its CLIP is replaced by the fixed features, with the
official feature normalisation (``x / ‖x‖``) and temperature (``1 / exp(logit_scale)``).
Writes ``tests/parity/golden/zero.safetensors``: ``votes`` ``[N, C]``, the official ``p_bar`` per
sample (vote counts, the tie-break's extra vote included).
"""

from __future__ import annotations

import zoo_recording as rec

REPOSITORY = "FarinaMatteo/zero"
PINNED = "c609f7c27bd83a9c898c5bb0256f8272e4d973e3"


def official_votes(crafted: bool = False) -> tuple[object, int]:
    """The official votes ``[N, C]`` and how many samples went to the tie-break; ``crafted``: on
    the sample of ``zero_fallback_views`` (the fallback tie-break) instead."""
    import torch
    from episodic_inputs import LOG_SCALE, fixed_features, zero_fallback_views
    from ttas.zero import Zero

    text, views = fixed_features()
    if crafted:
        views = zero_fallback_views()

    class FixedFeatureCLIP(torch.nn.Module):
        """The official CLIP wrapper's feature methods with the encoders replaced by fixed features."""

        def __init__(self) -> None:
            super().__init__()
            self.logit_scale = torch.nn.Parameter(torch.tensor(LOG_SCALE, dtype=torch.float32))

        @property
        def temp(self) -> torch.Tensor:  # as custom_clip.ClipTestTimeTuning.temp
            return 1 / self.logit_scale.exp()

        def get_text_features(self) -> torch.Tensor:
            return text / text.norm(dim=-1, keepdim=True)

        def get_image_features(self, image: torch.Tensor) -> torch.Tensor:
            return image / image.norm(dim=-1, keepdim=True)

    zero = Zero.__new__(Zero)  # the official __init__ loads a CLIP checkpoint; set what zero() reads
    torch.nn.Module.__init__(zero)
    zero.set_hyperparams()
    zero.model = FixedFeatureCLIP()
    votes, ties = [], 0
    for sample in views:
        p_bar = zero.zero(sample)[0]
        ties += int(p_bar.sum().item()) != int(zero.gamma * len(sample))
        votes.append(p_bar)
    return torch.stack(votes), ties


def main() -> None:
    _, commit, record = rec.official_checkout(REPOSITORY, PINNED, __doc__.splitlines()[0])
    import torch
    from episodic_inputs import DESCRIPTION, drive, feature_context, fixed_features, run_method, zero_fallback_views

    from rlcf_bench_baselines.zero import Zero

    torch.set_num_threads(1)
    votes, ties = official_votes()
    print(f"official: {ties} of {len(votes)} samples broke a tie")
    for batch_size in (4, 1):
        share = run_method(Zero, batch_size=batch_size)
        rec.report(f"zero, batch {batch_size} (vote share vs official share)", votes / votes.sum(-1, keepdim=True), share)
    fallback, _ = official_votes(crafted=True)
    print(f"official, crafted fallback sample: votes {fallback[0].tolist()}")
    for rule in ("mask", "official"):
        ours = drive(Zero, {"tie_break": rule}, feature_context(fixed_features()[0]), zero_fallback_views(), 1).outputs
        print(f"  ours, tie_break={rule}: share x 20 = {[round(20 * x, 3) for x in ours[0].tolist()]}")
    if record:
        rec.write_golden("zero", {"votes": votes, "votes_fallback": fallback}, repository=REPOSITORY, commit=commit,
                         script="record_zero.py",
                         inputs=DESCRIPTION + "; official Zero.zero, gamma 0.3; votes_fallback: zero_fallback_views")


if __name__ == "__main__":
    main()
