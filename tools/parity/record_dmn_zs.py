"""Record DMN-ZS's golden outputs from the official code (YBZh/DMN) on fixed features.

Runs the official ``dmn_main.direct_inference`` (zero-shot: no ``--n_shot``, the default
``--position all`` with untrained, zero mappings) with its real ``ClipFixed`` model object, whose
CLIP is replaced by a fake that returns the seeded features of
``record_online_common.make_stream`` (the text features through ``get_text_features`` with one
template, the image features through ``get_image_features``). ``--memory_size 3`` instead of 50,
so that the 64-sample stream fills and evicts the memory. Per sample: the zero-shot probabilities
of the centre view (``pred_vanilla``), the memory read-out (``pred_global``) and the memory after
the sample (entry ids and entropies).

    PYTHONPATH=/tmp/extra .venv/bin/python tools/parity/record_dmn_zs.py --official /tmp/official-DMN
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from record_online_common import (
    DIM,
    LOGIT_SCALE,
    N_CLASSES,
    N_SAMPLES,
    N_VIEWS,
    FakeCLIP,
    LoopSnapshots,
    import_official,
    loader,
    make_stream,
    nearest_id,
    official_commit,
    parse_args,
    write_golden,
)
from record_tda import cache_events

REPOSITORY = "https://github.com/YBZh/DMN"
PINNED = "c6c218c70ebbc701b31cc3d7f7b9597117daad8e"
SEED = 20
MEMORY_SIZE = 3
BETA = 5.5


class FakeTextCLIP(FakeCLIP):
    """Adds ``encode_text``: the k-th call (one class's prompts, in class order) returns that
    class's recorded text feature for each prompt."""

    def __init__(self, views: torch.Tensor, text: torch.Tensor) -> None:
        super().__init__(views, tokens=True)
        self.text, self.calls = text, 0

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        feature = self.text[self.calls % self.text.shape[0]]
        self.calls += 1
        return feature.expand(tokens.shape[0], -1).clone()


def memory_table(model: Any, ident: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((N_CLASSES, MEMORY_SIZE), -1, dtype=torch.int16)
    scores = torch.full((N_CLASSES, MEMORY_SIZE), float("inf"))
    for c in range(N_CLASSES):
        for slot in range(int(model.image_feature_count[c, 0])):
            ids[c, slot] = ident(model.image_feature_memory[c, slot])
            scores[c, slot] = float(model.image_entropy_mem[c, slot])
    return ids, scores


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    os.chdir(args.official)  # the official modules read files relative to the checkout
    module = import_official(args.official, "dmn_main")
    fix_clip = import_official(args.official, "clip.fix_clip")
    stream = make_stream(SEED)

    model = fix_clip.ClipFixed.__new__(fix_clip.ClipFixed)
    torch.nn.Module.__init__(model)
    model.clip = FakeTextCLIP(stream["views"], stream["text"])
    model.first_flag, model.memory_size, model.text_prompt_type = True, MEMORY_SIZE, "simple"
    model.logit_scale = torch.tensor(math.log(LOGIT_SCALE))
    model.reset_classnames([f"class{c}" for c in range(N_CLASSES)], "A")

    run_args = argparse.Namespace(beta=BETA, position="all", mapping="bias", shared_param=False,
                                  indice=torch.arange(DIM), n_shot=None, ft=False, selection_p=0.1, gpu=0,
                                  print_freq=10 ** 6, set_id="A")
    ident = nearest_id(F.normalize(stream["views"][:, 0], dim=-1))
    run = LoopSnapshots(module.direct_inference, lambda local: memory_table(local["model"], ident))
    with torch.no_grad():
        run(loader(N_SAMPLES, N_VIEWS), model, run_args)
    states = run.states[1:]
    final = run.final_locals
    out = {"pred_vanilla": final["pred_vanilla"].clone(), "pred_global": final["pred_global"].clone(),
           "memory_ids": torch.stack([s[0] for s in states]), "memory_scores": torch.stack([s[1] for s in states])}
    assert len(states) == N_SAMPLES and out["pred_global"].shape == (N_SAMPLES, N_CLASSES)
    written, evicted = cache_events(out["memory_ids"])
    events = {"memory_written": str(written), "memory_evicted": str(evicted)}
    print(events)
    assert evicted > 0, events
    tensors = {"text": stream["text"], "views": stream["views"], **out}
    write_golden("dmn_zs", args.out, tensors, may_write=may_write, repository=REPOSITORY, commit=commit, script="record_dmn_zs.py",
                 inputs=f"make_stream(seed={SEED}): {N_SAMPLES} samples x {N_VIEWS} views, {N_CLASSES} classes; "
                        f"--memory_size {MEMORY_SIZE} --beta {BETA} --selection_p 0.1, zero-shot",
                 memory_size=str(MEMORY_SIZE), **events)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
