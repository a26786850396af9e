"""Record RLCF retrieval (method ``rlcf``, task retrieval) from mzhaoshuai/RLCF ``retrieval/``:
``clip_ret_policy.test_time_tune`` (with ``tune_image`` / ``tune_text``), ``custom_models.CLIPRet_TTA``
and ``clip_reward.CLIPRewards``, run as they are on a CPU.

    .venv/bin/python tools/parity/record_rlcf_retrieval.py --official /tmp/official-RLCF [--momentum]

The official retrieval code loads CLIP through its bundled LAVIS (``load_openai_model``, the
OpenAI architecture ported to open_clip) and imports LAVIS's task/runner framework at the top of
``clip_ret_policy.py``. Neither is part of the algorithm, and LAVIS needs packages this project
does not have; so the LAVIS modules are replaced by stand-ins: ``load_openai_model`` returns the
tiny CLIP built by the same repository's ``TPT/clip/model.py`` (OpenAI's architecture; seed by
architecture name, ``tiny`` policy, ``tiny-reward`` reward), given the two attributes the
retrieval code reads of LAVIS's model (``visual.image_size`` and ``lock_image_tower``, which
freezes the image tower); ``tokenize`` is LAVIS's own tokenizer file; the framework imports are
empty modules. The data loader is a stand-in yielding the gallery images one at a time.

Inputs: 6 gallery images (seeded 32×32 uint8 pictures, normalised with CLIP's mean/std) and 12
captions (2 per image), K = 4 (image→text) and 3 (text→image), 4 AdamW steps at lr 1e-5 (wd 5e-4,
eps 1e-6; the scripts' 8 steps at lr 1e-6 move the tiny model too little to test anything).
Golden ``rlcf_retrieval.safetensors``: ``i2t`` [6, 12] and ``t2i`` [12, 6], the official score
matrices after tuning on each query. Extra packages: none beyond this project's.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import official_clip
import torch
import tpt_family as fam

N_IMAGES = 6
CAPTIONS = ("a red car parked on a street", "a small red car", "a dog running on grass", "a brown dog",
            "an airplane in the blue sky", "a white jet taking off", "a pizza on a wooden table", "a cheese pizza",
            "a sea turtle swimming", "a turtle under water", "a bowl of fruit", "apples and oranges in a bowl")
IMAGES_SEED = 5
OPTIONS = {"steps": 4, "lr": 1e-5, "k_i2t": 4, "k_t2i": 3}
#: ``--momentum``: the "-M" start point with a fast EMA (μ 0.5) refreshed every 2 queries of a direction
MOMENTUM = {"momentum": True, "momentum_mu": 0.5, "momentum_freq": 2, "momentum_w": 1.0}
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def pictures() -> torch.Tensor:
    """The gallery's uint8 pictures ``[6, 3, 32, 32]`` (tests/parity rebuilds them from the seed)."""
    g = torch.Generator().manual_seed(IMAGES_SEED)
    return torch.randint(0, 256, (N_IMAGES, 3, official_clip.IMAGE_SIZE, official_clip.IMAGE_SIZE), generator=g,
                         dtype=torch.uint8)


def normalised(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = sys.modules.get(name) or types.ModuleType(name)
    module.__path__ = []  # type: ignore[attr-defined]  # a package: submodules may be registered below it
    for key, value in attrs.items():
        setattr(module, key, value)
    sys.modules[name] = module
    return module


def install_lavis_stand_ins(parent: Path, tpt_parent: Path) -> None:
    spec = importlib.util.spec_from_file_location("lavis.models.clip_models.tokenizer",
                                                  parent / "lavis" / "models" / "clip_models" / "tokenizer.py")
    assert spec is not None and spec.loader is not None
    tokenizer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tokenizer)

    def load_openai_model(model_path: str, device: Any, jit: bool = False) -> Any:
        seed = fam.REWARD_SEED if Path(model_path).stem == fam.REWARD_ARCH else fam.POLICY_SEED
        model = official_clip.official_clip_model(tpt_parent, seed)
        model.visual.image_size = model.visual.input_resolution

        def lock_image_tower(unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
            for p in model.visual.parameters():
                p.requires_grad_(False)

        model.lock_image_tower = lock_image_tower
        return model

    for name in ("lavis", "lavis.common", "lavis.datasets", "lavis.datasets.builders", "lavis.models",
                 "lavis.processors", "lavis.runners", "lavis.tasks", "lavis.models.clip_models"):
        _stub(name)
    _stub("lavis.common.config", Config=None)
    _stub("lavis.common.dist_utils", get_rank=None, init_distributed_mode=None)
    _stub("lavis.common.logger", setup_logger=None, MetricLogger=None)
    _stub("lavis.common.utils", now=None)
    _stub("lavis.runners.runner_base", RunnerBase=None)
    _stub("lavis.models.clip_models.model", load_openai_model=load_openai_model)
    sys.modules["lavis.models.clip_models.tokenizer"] = tokenizer
    _stub("lavis_evaluate", setup_seeds=None)
    sys.path.insert(0, str(parent))


class Loader:
    """What ``test_time_tune`` reads of LAVIS's retrieval data loader."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.dataset = types.SimpleNamespace(image=[f"{i}.jpg" for i in range(len(images))], text=list(CAPTIONS),
                                             vis_root="")

    def __iter__(self) -> Any:
        return iter({"image": self.images[i : i + 1]} for i in range(len(self.images)))


def run(module: Any, reward_module: Any, models: Any, direction: str, images: torch.Tensor,
        momentum: dict[str, Any]) -> torch.Tensor:
    only_visual = direction == "i2t"
    k = OPTIONS["k_i2t"] if only_visual else OPTIONS["k_t2i"]
    args = types.SimpleNamespace(tta_steps=OPTIONS["steps"], lr=OPTIONS["lr"], weight_decay=5e-4,
                                 reward_arch=fam.REWARD_ARCH, sample_k=k, reward_amplify=0, reward_process=1,
                                 process_batch=0, multiple_reward_models=0, weighted_scores=1)
    model = models.CLIPRet_TTA("cpu", arch="tiny", only_visual=only_visual, momentum_update=int(bool(momentum)),
                               update_freq=momentum.get("momentum_freq", 64), update_w=momentum.get("momentum_w", 1.0),
                               momentum=momentum.get("momentum_mu", 0.9998))
    reward_model = reward_module.get_reward_model("cpu", args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, eps=1e-06, weight_decay=args.weight_decay)
    optim_state = copy.deepcopy(optimizer.state_dict())
    scaler = torch.cuda.amp.GradScaler(init_scale=1000)
    i2t, t2i = module.test_time_tune(Loader(images), "cpu", model, reward_model=reward_model, scaler=scaler,
                                     optimizer=optimizer, optim_state=optim_state, text_bs=128, args=args)
    return torch.from_numpy(i2t if only_visual else t2i).float()


def main() -> None:
    p = fam.parser(__doc__.split("\n\n")[0])
    p.add_argument("--momentum", action="store_true", help="record rlcf_retrieval_momentum (MOMENTUM) instead")
    a = p.parse_args()
    momentum = MOMENTUM if a.momentum else {}
    repository, pinned = fam.RLCF
    commit, record = fam.checkout_commit(a.official, pinned, a.allow_other_commit)
    torch.set_num_threads(1)
    parent = a.official / "retrieval"
    install_lavis_stand_ins(parent, a.official / "TPT")
    module = official_clip.import_official("clip_ret_policy")
    reward_module = sys.modules["clip_reward"]
    models = sys.modules["custom_models"]
    images = normalised(pictures())
    with fam.cpu_cuda_calls():
        tensors = {d: run(module, reward_module, models, d, images, momentum) for d in ("i2t", "t2i")}
    print({k: tuple(v.shape) for k, v in tensors.items()}, "top-1", {k: v.argmax(-1).tolist() for k, v in tensors.items()})
    if record:
        name = "rlcf_retrieval_momentum" if a.momentum else "rlcf_retrieval"
        fam.write_golden(a.out, name, tensors, repository=repository, commit=commit, script=Path(__file__).name,
                         described=fam.inputs(method="rlcf", task="retrieval", options={**OPTIONS, **momentum},
                                              n_images=N_IMAGES,
                                              images_seed=IMAGES_SEED, captions=list(CAPTIONS),
                                              caption_image=[i // 2 for i in range(len(CAPTIONS))]))


if __name__ == "__main__":
    main()
