"""Captioning fixtures: a tiny captioner trained for a few hundred steps on ``tiny-captioning``."""

from __future__ import annotations

import pytest

CAPTION_PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models", "rlcf_bench_rlcf")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for these tests: on a busy 2-core machine two threads contend and the tiny
    models' many small ops run several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def caption_host(make_host):
    return make_host(*CAPTION_PLUGINS)


@pytest.fixture
def caption_runner(caption_host, store):
    from rlcf_bench.runner import ExecutionOptions, Runner

    return Runner(caption_host, store, ExecutionOptions(device="cpu"))


def tiny_features(n: int = 8):
    """Training features (the original's dictionary) of the tiny captioning set with tiny-clip."""
    from rlcf_bench_fixtures.tiny import TinyCaptioningSet, load_tiny_clip
    from rlcf_bench_models._clipcap.features import extract_features

    data = TinyCaptioningSet(n)
    clip = load_tiny_clip("tiny-clip", "cpu")
    return clip, extract_features(clip, data.load_image, n, data.references)


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """(folder, summary) of a tiny ClipCap trained on tiny-captioning (≈ a few seconds)."""
    import torch

    # one thread: on a busy 2-core machine two threads contend and tiny ops run ~10× slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_tiny(tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _train_tiny(tmp_path_factory):
    import copy

    import torch

    from rlcf_bench_fixtures.tiny import build_tiny_captioner, tiny_caption_corpus
    from rlcf_bench_models._clipcap.tokenizer import load_tokenizer, train_bpe
    from rlcf_bench_models._clipcap.train import TrainConfig, train_captioner

    torch.manual_seed(0)
    clip, feats = tiny_features(8)
    base = build_tiny_captioner("cpu", clip=clip)
    out = tmp_path_factory.mktemp("tiny-clipcap")
    tok_dir = train_bpe(tiny_caption_corpus(), out / "tok-src", vocab_size=300, min_frequency=1)
    tokenizer = load_tokenizer(tok_dir)
    cfg = TrainConfig(kind="clipcap", steps=200, batch_size=12, lr=4e-3, warmup=20, train_decoder=True,
                      checkpoint_every=0, seed=0)
    summary = train_captioner(feats, out / "model", clip_model="tiny-clip", mapper_config=base.settings.mapper,
                              decoder=copy.deepcopy(base.decoder), tokenizer=tokenizer, tokenizer_dir=tok_dir,
                              config=cfg, progress=False, log=lambda *_: None,
                              settings_extra={"max_new_tokens": 10, "tta": {"k": 4, "lr": 1e-3}})
    return out / "model", summary, clip


@pytest.fixture
def make_tiny_features():
    return tiny_features
