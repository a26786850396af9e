"""Record DPE's golden outputs from the official code (zhangce01/DPE-CLIP) on fixed features.

Runs the official ``main_dpe.run_test_dpe`` on the seeded stream of
``record_online_common.make_stream`` with the official configurations of ImageNet-A (``A``: the
confident views are selected again under the refined text prototypes at inference) and
ImageNet-V2 (``V``: inference from the centre view), each twice: with the official fp16
residuals (``.../fp16``) and with fp32 residuals (``.../fp32``, this project's default), the only
change being the residual parameters' dtype; and Caltech101 (the official loader gives the centre
view alone, fp32). Per sample: the final logits, the priority queues
after the sample (entry ids and normalised entropies), the evolving text prototypes
``clip_weights_global`` and the number of text updates so far.

    PYTHONPATH=/tmp/extra .venv/bin/python tools/parity/record_dpe.py --official /tmp/official-DPE-CLIP
"""

from __future__ import annotations

from typing import Any

import torch
from record_online_common import (
    N_CLASSES,
    N_SAMPLES,
    N_VIEWS,
    FakeCLIP,
    LoopSnapshots,
    cache_table,
    import_official,
    loader,
    make_stream,
    nearest_id,
    no_half,
    official_commit,
    parse_args,
    write_golden,
)
from record_tda import cache_events

REPOSITORY = "https://github.com/zhangce01/DPE-CLIP"
PINNED = "fecae5a50d7dc39fb944221be390201a56948416"
SEED = 20
#: official dataset name → (this project's, the official loader gives the centre view only, residual dtypes)
SETTINGS = {"A": ("imagenet-a", False, ("fp32", "fp16")), "V": ("imagenet-v2", False, ("fp32", "fp16")),
            "caltech101": ("caltech101", True, ("fp32",))}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def residual_dtype(module: Any, dtype: torch.dtype) -> None:
    """Give the official residual modules' parameters ``dtype`` (the official code makes them
    ``torch.zeros(...).half()``; :func:`no_half` would otherwise leave them fp32)."""
    for cls in (module.TextResidue, module.PositiveCacheResidue):
        init = cls.__dict__.get("_parity_original_init", cls.__init__)
        cls._parity_original_init = init

        def patched(self: Any, *args: Any, _init: Any = init, **kwargs: Any) -> None:
            _init(self, *args, **kwargs)
            self.residual = torch.nn.Parameter(torch.zeros_like(self.residual, dtype=dtype), requires_grad=True)

        cls.__init__ = patched


def record(module: Any, stream: dict[str, torch.Tensor], official_name: str, checkout: Any,
           dtype: torch.dtype, centre_only: bool) -> dict[str, torch.Tensor]:
    cfg = module.get_config_file(str(checkout / "configs"), official_name)
    residual_dtype(module, dtype)
    logits: list[torch.Tensor] = []
    queries: list[torch.Tensor] = []

    def cls_acc(output: torch.Tensor, target: torch.Tensor, topk: int = 1) -> float:
        logits.append(output.detach().reshape(-1).float().clone())
        return 0.0  # the official accuracy (dummy targets) is not needed

    def snapshot(local: dict[str, Any]) -> Any:
        if "image_features_x" not in local:
            return None
        queries.append(local["image_features_x"].detach().reshape(-1).clone())
        ids, scores = cache_table(local["pos_cache"], nearest_id(torch.stack(queries)),
                                  cfg["positive"]["shot_capacity"])
        return ids, scores, local["clip_weights_global"].detach().t().float().clone(), int(local["num_avg"])

    module.cls_acc = cls_acc
    run = LoopSnapshots(module.run_test_dpe, snapshot)
    with no_half():
        run(cfg["positive"], cfg["learning_rate"], loader(N_SAMPLES, N_VIEWS, centre_only=centre_only),
            FakeCLIP(stream["views"]),
            stream["text"].t().clone(), official_name)
    states = run.states[1:]
    assert len(states) == N_SAMPLES and len(logits) == N_SAMPLES
    out = {"logits": torch.stack(logits), "queries": torch.stack(queries),
           "queue_ids": torch.stack([s[0] for s in states]), "queue_scores": torch.stack([s[1] for s in states]),
           "text_global": torch.stack([s[2] for s in states]),
           "n_averaged": torch.tensor([s[3] for s in states])}
    out["preds"] = out["logits"].argmax(-1)
    return out


def check_events(out: dict[str, torch.Tensor], prefix: str) -> dict[str, str]:
    written, evicted = cache_events(out["queue_ids"])
    updates = int(out["n_averaged"][-1])
    drift = float((out["text_global"][-1] - out["text_global"][0]).abs().max())
    events = {"queue_written": written, "queue_evicted": evicted, "text_updates": updates}
    print(prefix, events, f"text drift {drift:.3g}")
    assert evicted > 0 and 0 < updates < N_SAMPLES and drift > 0, events
    return {f"{prefix}{k}": str(v) for k, v in events.items()}


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    module = import_official(args.official, "main_dpe")
    stream = make_stream(SEED)
    tensors = {"text": stream["text"], "views": stream["views"]}
    meta: dict[str, str] = {}
    for official_name, (dataset, centre_only, labels) in SETTINGS.items():
        for label in labels:
            out = record(module, stream, official_name, args.official, DTYPES[label], centre_only)
            meta.update(check_events(out, f"{dataset}/{label}/"))
            tensors.update({f"{dataset}/{label}/{key}": value for key, value in out.items()})
    write_golden("dpe", args.out, tensors, may_write=may_write, repository=REPOSITORY, commit=commit,
                 script="record_dpe.py",
                 inputs=f"make_stream(seed={SEED}): {N_SAMPLES} samples x {N_VIEWS} views, {N_CLASSES} classes; "
                        "official configs of imagenet-a (A) and imagenet-v2 (V), residuals fp32 and fp16 (official); "
                        "caltech101 (one view), fp32",
                 settings=",".join(f"{d}/{label}" for d, _, labels in SETTINGS.values() for label in labels), **meta)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
