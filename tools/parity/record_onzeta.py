"""Record OnZeta's golden outputs from TTA-VLM's official port on fixed features.

TTA-VLM's ``online_tta.py`` needs CLIP weights and datasets, so its driver loop is repeated here
as it calls the method for batch size 1 (``pre_adaptation()``, then
``adaptation_process(None, images, args)`` per sample, ``args.loader_len`` = the stream length)
around the official ``online_method.onzeta.OnZeta`` object itself. Its model is a fake whose
``get_text_features`` returns the seeded class features and whose ``forward_features`` returns
the normalised centre-view feature of ``record_online_common.make_stream`` (what the official
``ClipTestTimeTuning.forward_features`` returns for one image). Two streams: ``--test_sets A``
(an ImageNet code: β = 0.8, α = 1) and ``--test_sets Caltech101`` (β = 0.4, α = 0). Per sample:
the output probabilities, ``ρ`` and the proxies ``W`` after the sample. CPU, fp32: ``.cuda`` is a
no-op and CUDA autocast / GradScaler are disabled without a GPU.

    .venv/bin/python tools/parity/record_onzeta.py --official /tmp/off-tta-vlm   # a git checkout
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from record_online_common import (
    LOGIT_SCALE,
    N_SAMPLES,
    N_VIEWS,
    import_official,
    official_commit,
    parse_args,
    write_golden,
)
from record_online_common import make_stream as make_online_stream

REPOSITORY = "https://github.com/TomSheng21/tta-vlm"
PINNED = "bcc735fe49cbd2ab5b683781c41c66e1d3f78589"
SEED = 30
SETS = {"A": "imagenet", "Caltech101": "caltech101"}


class FakeCoOpCLIP(torch.nn.Module):
    """What ``OnZeta`` uses of TTA-VLM's ``ClipTestTimeTuning``: "images" are sample ids."""

    def __init__(self, text: torch.Tensor, centre: torch.Tensor) -> None:
        super().__init__()
        self.text, self.centre = text, F.normalize(centre, dim=-1)
        self.dtype = torch.float32
        self.logit_scale = torch.nn.Parameter(torch.tensor(LOGIT_SCALE).log())

    def get_text_features(self) -> torch.Tensor:
        return self.text.clone()

    def forward_features(self, ids: torch.Tensor) -> tuple[torch.Tensor, Any, Any]:
        return self.centre[ids.reshape(-1).long()].clone(), None, None


def record(module: Any, stream: dict[str, torch.Tensor], test_sets: str) -> dict[str, torch.Tensor]:
    model = FakeCoOpCLIP(stream["text"], stream["views"][:, 0])
    method = module.OnZeta(model, 0)
    args = argparse.Namespace(test_sets=test_sets, loader_len=N_SAMPLES)
    method.prepare_model_and_optimization(args)
    outputs, rhos, proxies = [], [], []
    with torch.no_grad():
        for i in range(N_SAMPLES):
            method.pre_adaptation()
            out = method.adaptation_process(None, torch.tensor([[float(i)]]), args)["output"]
            outputs.append(out[0].clone())
            rhos.append(method.rho[0].clone())
            proxies.append(method.w.t().clone())  # [C, d]
    print(f"{test_sets}: beta {method.beta}, alpha {method.alpha}, rho > 0 after the stream: "
          f"{int((method.rho > 0).sum())} classes")
    return {"output": torch.stack(outputs), "rho": torch.stack(rhos), "proxies": torch.stack(proxies)}


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    module = import_official(args.official, "online_method.onzeta")
    stream = make_online_stream(SEED)
    tensors: dict[str, torch.Tensor] = {"text": stream["text"], "views": stream["views"][:, :1].contiguous()}
    for code, name in SETS.items():
        tensors.update({f"{name}.{k}": v for k, v in record(module, stream, code).items()})
    assert bool((tensors["imagenet.rho"] > 0).any()), "the stream never moves rho: nothing is compared"
    write_golden("onzeta", args.out, tensors, may_write=may_write, repository=REPOSITORY, commit=commit,
                 script="record_onzeta.py",
                 inputs=f"make_stream(seed={SEED}) centre views: {N_SAMPLES} samples (of {N_VIEWS} views); "
                        "--test_sets A and Caltech101, loader_len 64, batch size 1",
                 sets=",".join(f"{k}={v}" for k, v in SETS.items()))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
