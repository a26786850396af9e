"""Record BoostAdapter's golden outputs from the official code (taolinzhang/BoostAdapter).

Runs the official ``runner.run_test_tda`` in ``--mode boostadapter`` on the seeded stream of
``record_online_common.make_stream`` in three of its settings, each with its official
configuration: ``A`` (ImageNet-A: confident-view historical entries, δ 3), ``caltech101``
(fine-grained: the centre view as historical entry, boosting from all views, δ 2) and ``I``
(ImageNet: the official loader gives one view, so no boosting). Per sample: the final logits and
the positive and negative caches after the sample (entry ids and entropies). The negative cache
is first-in-first-out in this code (``update_cache(..., fifo=True)``), which the recording checks
by counting evictions.

    PYTHONPATH=/tmp/extra .venv/bin/python tools/parity/record_boostadapter.py --official /tmp/official-BoostAdapter
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from record_online_common import (
    N_CLASSES,
    N_SAMPLES,
    N_VIEWS,
    import_official,
    make_stream,
    official_commit,
    parse_args,
    write_golden,
)
from record_tda import check_events, record_caches

REPOSITORY = "https://github.com/taolinzhang/BoostAdapter"
PINNED = "9983e1a1fdbd8587177d89a594d19458ad181a30"
SEED = 20
#: official --datasets name → (this project's dataset name, the official loader gives one view only)
SETTINGS = {"A": ("imagenet-a", False), "caltech101": ("caltech101", False), "I": ("imagenet", True)}


class QuietLogger:
    def info(self, *args: Any, **kwargs: Any) -> None:
        pass


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    module = import_official(args.official, "runner")
    stream = make_stream(SEED)
    tensors = {"text": stream["text"], "views": stream["views"]}
    meta: dict[str, str] = {}
    for name, (dataset, centre_only) in SETTINGS.items():
        cfg = module.get_config_file(str(args.official / "configs"), name)
        run_args = argparse.Namespace(mode="boostadapter", datasets=name, delta=cfg.get("delta", 0), views=N_VIEWS)
        out = record_caches(module, stream, cfg, module.run_test_tda, (QuietLogger(), run_args, cfg),
                            centre_only=centre_only)
        meta.update(check_events(out, prefix=f"{dataset}/"))
        tensors.update({f"{dataset}/{key}": value for key, value in out.items()})
    datasets = ", ".join(f"{d} ({n})" for n, (d, _) in SETTINGS.items())
    write_golden("boostadapter", args.out, tensors, may_write=may_write, repository=REPOSITORY, commit=commit,
                 script="record_boostadapter.py",
                 inputs=f"make_stream(seed={SEED}): {N_SAMPLES} samples x {N_VIEWS} views, {N_CLASSES} classes; "
                        f"official configs of {datasets}", settings=",".join(d for d, _ in SETTINGS.values()),
                 **meta)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
