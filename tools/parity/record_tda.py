"""Record TDA's golden outputs from the official code (kdiAAA/TDA) on fixed features.

Runs the official ``run_test_tda`` with its ImageNet-A configuration (α 2, β 5, caches of 3 and
2 per class, negative gate 0.2 < H/log2 C < 0.5) on the seeded stream of
``record_online_common.make_stream`` (64 samples × 20 views, 8 classes, d = 12), and writes per
sample the final logits and the two caches after the sample (entry ids and entropies).

    PYTHONPATH=/tmp/extra .venv/bin/python tools/parity/record_tda.py --official /tmp/official-TDA
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

REPOSITORY = "https://github.com/kdiAAA/TDA"
PINNED = "e697fb0c8078cdeff93daa56bcf8860702542069"
SEED = 20


def cache_events(ids: torch.Tensor) -> tuple[int, int]:
    """(entries written, entries evicted) over a sequence of ``[N, C, cap]`` id tables."""
    written = evicted = 0
    previous = torch.full_like(ids[0], -1)
    for state in ids:
        for old, new in zip(previous, state):
            before, after = set(old.tolist()) - {-1}, set(new.tolist()) - {-1}
            written += len(after - before)
            evicted += len(before - after)
        previous = state
    return written, evicted


def record_caches(module: Any, stream: dict[str, torch.Tensor], cfg: dict[str, Any], runner: Any,
                  extra_args: tuple[Any, ...] = (), centre_only: bool = False) -> dict[str, torch.Tensor]:
    """Run an official TDA-style loop (TDA's, or BoostAdapter's which has the same locals) and
    return its per-sample logits, queries and cache tables."""
    logits: list[torch.Tensor] = []
    queries: list[torch.Tensor] = []

    def cls_acc(output: torch.Tensor, target: torch.Tensor, topk: int = 1) -> float:
        # the official cls_acc reads the final logits; its accuracy (targets are dummies) is not needed
        logits.append(output.detach().reshape(-1).clone())
        return 0.0

    def snapshot(local: dict[str, Any]) -> Any:
        if "image_features" in local:
            queries.append(local["image_features"].reshape(-1).clone())
        if not queries:
            return None
        ident = nearest_id(torch.stack(queries))
        pos = cache_table(local["pos_cache"], ident, cfg["positive"]["shot_capacity"])
        neg = cache_table(local["neg_cache"], ident, cfg["negative"]["shot_capacity"])
        return pos, neg

    module.cls_acc = cls_acc
    views = stream["views"]
    model = FakeCLIP(views)
    run = LoopSnapshots(runner, snapshot)
    with no_half(), torch.no_grad():
        run(cfg["positive"], cfg["negative"], loader(N_SAMPLES, N_VIEWS, centre_only=centre_only), model, stream["text"].t().clone(),
            *extra_args)
    states = run.states[1:]  # after each sample
    assert len(states) == N_SAMPLES and len(logits) == N_SAMPLES
    return {
        "logits": torch.stack(logits), "preds": torch.stack(logits).argmax(-1), "queries": torch.stack(queries),
        "pos_ids": torch.stack([s[0][0] for s in states]), "pos_scores": torch.stack([s[0][1] for s in states]),
        "neg_ids": torch.stack([s[1][0] for s in states]), "neg_scores": torch.stack([s[1][1] for s in states]),
    }


def check_events(out: dict[str, torch.Tensor], prefix: str = "") -> dict[str, str]:
    """Assert the stream exercised the caches; the counts go into the golden file's metadata."""
    pos_written, pos_evicted = cache_events(out["pos_ids"])
    neg_written, neg_evicted = cache_events(out["neg_ids"])
    events = {"pos_written": pos_written, "pos_evicted": pos_evicted, "neg_written": neg_written,
              "neg_evicted": neg_evicted, "full_classes_at_end": int((out["pos_ids"][-1] >= 0).all(-1).sum())}
    print(events)
    assert pos_evicted > 0 and neg_written > 0 and neg_evicted > 0, events
    assert events["full_classes_at_end"] >= N_CLASSES // 2, events
    return {prefix + k: str(v) for k, v in events.items()}


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    module = import_official(args.official, "tda_runner")
    cfg = module.get_config_file(str(args.official / "configs"), "A")
    stream = make_stream(SEED)
    out = record_caches(module, stream, cfg, module.run_test_tda)
    events = check_events(out)
    tensors = {"text": stream["text"], "views": stream["views"], **out}
    write_golden("tda", args.out, tensors, may_write=may_write, repository=REPOSITORY, commit=commit, script="record_tda.py",
                 inputs=f"make_stream(seed={SEED}): {N_SAMPLES} samples x {N_VIEWS} views, {N_CLASSES} classes; "
                        "configs/imagenet_a.yaml", config="imagenet-a", **events)


if __name__ == "__main__":
    main()
