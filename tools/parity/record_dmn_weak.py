"""Record DMN-weak's golden outputs from TTA-VLM's official port on fixed features.

As ``record_onzeta.py``: TTA-VLM's driver needs CLIP and datasets, so its batch-size-1 loop
(``pre_adaptation()``, ``adaptation_process(None, images, args)``) is repeated here around the
official ``online_method.dmn_weak.DMN_WEAK`` object, whose model is a fake returning the seeded
class features (``get_text_features``) and the normalised centre-view features with the text
features and CLIP's logit scale 100 (``forward_features``). The memory holds 3 entries per class
instead of the hard-coded 50 (``max_len`` set before ``prepare_model_and_optimization``), so that
the 64-sample stream fills and replaces. Per sample: the output ``softmax0 + α·softmax_d`` and
the memory after the sample (entry ids and entropies).

    .venv/bin/python tools/parity/record_dmn_weak.py --official /tmp/off-tta-vlm   # a git checkout
"""

from __future__ import annotations

import argparse
import types
from typing import Any

import torch
import torch.nn.functional as F
from record_dmn_zs import MEMORY_SIZE
from record_dmn_zs import memory_table as dmn_memory_table
from record_online_common import (
    LOGIT_SCALE,
    N_SAMPLES,
    N_VIEWS,
    import_official,
    nearest_id,
    official_commit,
    parse_args,
    write_golden,
)
from record_online_common import make_stream as make_online_stream
from record_onzeta import PINNED, REPOSITORY
from record_tda import cache_events

SEED = 31


class FakeCoOpCLIP(torch.nn.Module):
    """What ``DMN_WEAK`` uses of TTA-VLM's ``ClipTestTimeTuning``: "images" are sample ids."""

    def __init__(self, text: torch.Tensor, centre: torch.Tensor) -> None:
        super().__init__()
        self.text, self.centre = text, F.normalize(centre, dim=-1)

    def get_text_features(self) -> torch.Tensor:
        return self.text.clone()

    def forward_features(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.centre[ids.reshape(-1).long()].clone(), self.text.clone(), torch.tensor(LOGIT_SCALE)


def memory_table(mem: Any, ident: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The port's ``MemoryBank`` as ``(ids, scores)`` ``[C, 3]``, read as DMN's own memory is."""
    as_dmn = types.SimpleNamespace(image_feature_count=mem.counts.unsqueeze(1), image_feature_memory=mem.memory,
                                   image_entropy_mem=mem.ent_mem)
    return dmn_memory_table(as_dmn, ident)


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    module = import_official(args.official, "online_method.dmn_weak")
    stream = make_online_stream(SEED)
    centre = stream["views"][:, 0]
    method = module.DMN_WEAK(FakeCoOpCLIP(stream["text"], centre), "cpu")
    method.max_len = MEMORY_SIZE
    run_args = argparse.Namespace(test_sets="A", loader_len=N_SAMPLES)
    method.prepare_model_and_optimization(run_args)
    ident = nearest_id(F.normalize(centre, dim=-1))
    outputs, ids, scores = [], [], []
    with torch.no_grad():
        for i in range(N_SAMPLES):
            method.pre_adaptation()
            outputs.append(method.adaptation_process(None, torch.tensor([[float(i)]]), run_args)["output"][0].clone())
            table = memory_table(method.mem, ident)
            ids.append(table[0])
            scores.append(table[1])
    out = {"output": torch.stack(outputs), "memory_ids": torch.stack(ids), "memory_scores": torch.stack(scores)}
    written, replaced = cache_events(out["memory_ids"])
    events = {"memory_written": str(written), "memory_replaced": str(replaced)}
    print(events)
    assert replaced > 0, events
    tensors = {"text": stream["text"], "views": stream["views"][:, :1].contiguous(), **out}
    write_golden("dmn_weak", args.out, tensors, may_write=may_write, repository=REPOSITORY, commit=commit,
                 script="record_dmn_weak.py",
                 inputs=f"make_stream(seed={SEED}) centre views: {N_SAMPLES} samples (of {N_VIEWS} views); "
                        f"max_len {MEMORY_SIZE} (official 50), beta 5.5, alpha 1.0, batch size 1",
                 memory_size=str(MEMORY_SIZE), **events)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
