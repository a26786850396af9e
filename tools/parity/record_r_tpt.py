"""Record R-TPT's golden outputs from the official code (TomSheng21/R-TPT), clean setting, 1 and 3 steps.

    git clone https://github.com/TomSheng21/R-TPT /tmp/official-r-tpt
    git -C /tmp/official-r-tpt checkout e085f134eb299083ccc97327b316272fc40393b8
    .venv/bin/python tools/parity/record_r_tpt.py --official /tmp/official-r-tpt

Runs the official per-sample loop ``rtpt.test_time_adapt_eval`` (and its ``test_time_tuning``)
as it is, with ``--eps 0`` (the clean accuracy), set up as its ``main``: ``get_coop`` with
``ctx_init`` "a_photo_of_a", everything but the prompt learner frozen, AdamW lr 5e-3,
``--selection_p 0.1``, its fixed 20 neighbours and temperature 0.01. Its ``clip.load`` returns the
tiny CLIP of ``official_clip.py``. The official model normalises its input itself (its loader
yields unnormalised views), so it is fed ``x = v·std + mean`` for the normalised views ``v`` of
``tests/parity/episodic_inputs.py`` that our side receives (its normalisation gives ``v`` back
to within 1e-7).

Golden ``r_tpt.safetensors``, for 1 and 3 steps (suffix ``_steps1``/``_steps3``): ``logits``
``[N, C]`` (the reliability-weighted ensemble it predicts), ``selected`` ``[N, 6]``, ``tuned``
``[N, 4, 128]``, ``view_logits`` ``[N, V, C]`` (all views under the tuned prompt, what it
ensembles), ``reliability`` ``[N, V]`` (its ``get_top_sim`` scores, before the softmax) and
``reliability_of_our_features`` (the official ``get_top_sim`` on our model's view features).
"""

from __future__ import annotations

import io
import types

import zoo_recording as rec

REPOSITORY = "TomSheng21/R-TPT"
PINNED = "e085f134eb299083ccc97327b316272fc40393b8"
MEAN = (0.48145466, 0.4578275, 0.40821073)  # the official ImageNormalizer's (CLIP's) statistics
STD = (0.26862954, 0.26130258, 0.27577711)


def official_run(official: object, steps: int) -> dict[str, object]:
    import torch
    from episodic_inputs import PROMPT_CLASSNAMES, SELECTION_RATIO, prompt_labels, prompt_views

    helper = rec.use_tiny_clip(official)
    module = helper.import_official("rtpt", official)
    args = types.SimpleNamespace(gpu=0, eps=0.0, tta_steps=steps, selection_p=SELECTION_RATIO, print_freq=10**9,
                                 out_file=io.StringIO())
    views = prompt_views(helper) * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    with rec.cpu_cuda_calls():
        model = module.get_coop("tiny", list(PROMPT_CLASSNAMES), "cpu", 4, "a_photo_of_a")
        optimizer, optim_state = rec.tune_prompt_only(model)
        capture = rec.LoopCapture(module, lambda: model.prompt_learner.ctx, calls=2, call=1)  # zero-shot, then R-TPT
        scores, top_sim = [], module.get_top_sim

        def get_top_sim(sim_matrix: torch.Tensor) -> torch.Tensor:
            scores.append(top_sim(sim_matrix).detach().clone())
            return scores[-1]

        module.get_top_sim = get_top_sim
        all_views: list[torch.Tensor] = []  # the no-grad forwards of all views: zero-shot, then tuned

        def keep(_module: object, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
            if not torch.is_grad_enabled() and len(inputs[0]) == len(views[0]):
                all_views.append(output.detach().clone())

        model.register_forward_hook(keep)
        module.test_time_adapt_eval(rec.official_loader(views, prompt_labels()), model, None, optimizer, optim_state,
                                    None, args, None)
        module.get_top_sim = top_sim
    return {**capture.tensors(), "reliability": torch.cat(scores), "view_logits": torch.stack(all_views[1::2]),
            "reliability_of_our_features": rule_on_our_features(helper, top_sim)}


def rule_on_our_features(helper: object, get_top_sim: object) -> object:
    """The official ``get_top_sim`` on the similarity matrix of *our* model's view features, computed
    as ``reliability_weights`` computes it: the official rule on identical inputs. (The official
    features differ from ours by ~1e-7, and which diagonal entries round to ≥ 1.0 with it.)"""
    import torch
    from episodic_inputs import prompt_views

    views = prompt_views(helper)
    features = helper.tiny_vlm().image_features(views.flatten(0, 1)).view(*views.shape[:2], -1).float()
    sim = features @ features.transpose(1, 2)
    return torch.cat([get_top_sim(sim[i:i + 1].clone()) for i in range(len(sim))])


def main() -> None:
    from rlcf_bench_baselines.r_tpt import RTPT

    rec.record_prompt_tuner("r-tpt", RTPT, official_run, repository=REPOSITORY, pinned=PINNED,
                            description=__doc__.splitlines()[0],
                            option_sets=({"self_similarity": "index"}, {"self_similarity": "threshold"}),
                            inputs="official rtpt.test_time_adapt_eval, eps 0, AdamW lr 5e-3, selection_p 0.1, "
                                   "20 neighbours, temperature 0.01, tta_steps 1 and 3")


if __name__ == "__main__":
    main()
