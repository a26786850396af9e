"""Retrieval fixtures: a tiny policy, a method context over ``tiny-captions``, LAVIS-format files."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

RETRIEVAL_PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models", "rlcf_bench_rlcf",
                     "rlcf_bench_datasets")


@pytest.fixture
def rhost(make_host):
    return make_host(*RETRIEVAL_PLUGINS)


@pytest.fixture
def rrunner(rhost, store):
    from rlcf_bench.runner import ExecutionOptions, Runner

    return Runner(rhost, store, ExecutionOptions(device="cpu"))


@pytest.fixture
def tiny_vlm():
    import torch

    from rlcf_bench.tta.vlm import OpenClipVLM
    from rlcf_bench_fixtures.tiny import build_tiny_clip

    model, tokenizer = build_tiny_clip(seed=0)
    torch.manual_seed(0)
    return OpenClipVLM(model, tokenizer, name="tiny-clip", image_size=32)


@pytest.fixture
def make_ctx():
    """``make_ctx(model, reward, protocol=None, dataset=None)`` → (task, ctx) on tiny-captions."""

    def make(model: Any, reward: Any = None, protocol: Any = None, dataset: Any = None) -> Any:
        import torch

        from rlcf_bench import MethodContext, RunProtocol
        from rlcf_bench.device import AmpHelper, SectionTimer
        from rlcf_bench_fixtures.tiny import TinyCaptions
        from rlcf_bench_tasks.retrieval import RetrievalTask

        dev = torch.device("cpu")
        task = RetrievalTask(dataset if dataset is not None else TinyCaptions(8), protocol or RunProtocol(n_views=1))
        ctx = MethodContext(task="retrieval", protocol=task.protocol, device=dev, amp=AmpHelper(dev, "fp32"),
                            model=model, reward_model=reward, **task.context_fields(model, dev))
        ctx.timer = SectionTimer(dev)
        return task, ctx

    return make


def _jpeg(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (12, 10), rgb).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def karpathy_root(tmp_path: Path) -> Path:
    """COCO and Flickr30k Karpathy test files in the LAVIS format
    (``docs/original-code.md#retrieval-data``), 3 and 2 images."""
    coco = []
    for k, rgb in enumerate([(220, 30, 30), (30, 200, 40), (30, 60, 220)]):
        rel = f"val2014/COCO_val2014_{391895 + k:012d}.jpg"
        (tmp_path / "coco2014" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "coco2014" / rel).write_bytes(_jpeg(rgb))
        coco.append({"image": rel, "caption": [f"A Man (on a bike) #{k}.", f"Two  dogs; playing {k}!"][: 1 + k % 2]})
    (tmp_path / "coco2014" / "coco_karpathy_test.json").write_text(json.dumps(coco))
    flickr = []
    for k in range(2):
        rel = f"flickr30k-images/{1007129816 + k}.jpg"
        (tmp_path / "flickr30k" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "flickr30k" / rel).write_bytes(_jpeg((40 * k, 100, 100)))
        flickr.append({"image": rel, "caption": [f"caption {j} of {k}" for j in range(5)]})
    (tmp_path / "flickr30k" / "annotations").mkdir(parents=True)
    (tmp_path / "flickr30k" / "annotations" / "flickr30k_test.json").write_text(json.dumps(flickr))
    return tmp_path
