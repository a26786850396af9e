"""Record TTL's golden outputs from TTA-VLM's official port, on the tiny CLIP.

    git clone https://github.com/TomSheng21/tta-vlm /tmp/off-tta-vlm   # at bcc735f
    .venv/bin/python tools/parity/record_ttl.py --official /tmp/off-tta-vlm

Builds the port's model as ``instance_tta.py`` does for ``--algorithm ttl``
(``get_clip_lora_v2(arch, classnames, gpu, 4, "a_photo_of_a")``, then ``add_lora``), its
``clip.load`` returning the tiny CLIP of ``official_clip.py``, whose ViT has 2 blocks: the
adapters go on both (``layer_indices=[0, 1]``; the port's default ``[9, 10, 11]`` are ViT-B/16's
last 3), rank 16, α 32. Then the official ``instance_method.ttl.TTL`` object runs the port's
per-sample calls (``pre_adaptation()``, ``adaptation_process(view 0, all views, args)``; lr 5e-3,
1 and 2 steps) on the views of ``tests/parity/episodic_inputs.py`` (already normalised, as the
port's loader yields them). The adapters' ``A`` are drawn by the port's own initialiser from the
global RNG (seeded); they are recorded so that our side starts from the same ``A``.

Golden ``ttl.safetensors``: ``a_init`` ``[sites, d, 16]`` (sites in our order: block 0 q, block 0 v,
block 1 q, ...), per steps suffix ``_steps1`` / ``_steps2``: ``logits`` ``[N, C]`` (view 0 under the
adapted tower), ``a`` and ``b`` ``[2, sites, ...]`` after the episode of the first 2 samples.
"""

from __future__ import annotations

import types

import zoo_recording as rec

REPOSITORY = "TomSheng21/tta-vlm"
PINNED = "bcc735fe49cbd2ab5b683781c41c66e1d3f78589"
A_SEED = 123
KEPT_STATES = 2  # samples whose adapters are stored (all 8 would make the golden file 1 MB)


def lora_modules(model: object) -> list[object]:
    """The port's ``LoRALinear`` modules in our site order (per block: q, then v)."""
    blocks = model.image_encoder.transformer.resblocks  # type: ignore[attr-defined]
    return [m for block in blocks for m in (block.attn.q_proj, block.attn.v_proj)]


def official_run(official: object) -> dict[str, object]:
    import torch
    from episodic_inputs import PROMPT_CLASSNAMES, prompt_views

    helper = rec.use_tiny_clip(official)
    custom_clip = helper.import_official("clip.custom_clip", official)
    ttl = helper.import_official("instance_method.ttl", official)
    views = prompt_views(helper)
    out: dict[str, object] = {}
    with rec.cpu_cuda_calls():
        model = custom_clip.get_clip_lora_v2("tiny", list(PROMPT_CLASSNAMES), "cpu", 4, "a_photo_of_a")
        for p in model.parameters():
            p.requires_grad_(False)
        torch.manual_seed(A_SEED)
        model.add_lora(layer_indices=[0, 1])
        sites = lora_modules(model)
        out["a_init"] = torch.stack([m.A_init_state.clone() for m in sites])
        for steps in (1, 2):
            method = ttl.TTL(model, 0)
            args = types.SimpleNamespace(lr=5e-3, tta_steps=steps)
            method.prepare_model_and_optimization(args)
            logits, a, b = [], [], []
            for sample in views:
                method.pre_adaptation()
                result = method.adaptation_process(sample[:1], sample, args)
                logits.append(result["output"][0].detach().clone())
                a.append(torch.stack([m.A.detach().clone() for m in sites]))
                b.append(torch.stack([m.B.detach().clone() for m in sites]))
            out[f"logits_steps{steps}"] = torch.stack(logits)
            out[f"a_steps{steps}"] = torch.stack(a[:KEPT_STATES])
            out[f"b_steps{steps}"] = torch.stack(b[:KEPT_STATES])
            moved = float(out[f"b_steps{steps}"].abs().max())  # type: ignore[arg-type]
            print(f"{steps} step(s): max |B| after the episode {moved:.3g}")
            assert moved > 0, "the adapters never moved: nothing is compared"
    return out


def main() -> None:
    official, commit, record = rec.official_checkout(REPOSITORY, PINNED, __doc__.split("\n")[0])
    from episodic_inputs import PROMPT_DESCRIPTION

    tensors = official_run(official)
    if record:
        rec.write_golden("ttl", tensors, repository=REPOSITORY, commit=commit, script="record_ttl.py",
                         inputs=f"{PROMPT_DESCRIPTION}; LoRA on blocks [0, 1] (q, v), rank 16, alpha 32, A from "
                                f"torch.manual_seed({A_SEED}); lr 5e-3; 1 and 2 steps")


if __name__ == "__main__":
    main()
