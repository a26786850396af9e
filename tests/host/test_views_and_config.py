"""Views (seeded per sample, centre crop first), config coercion, exact text truncation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlcf_bench.tta.views import crop_boxes, make_views, normalize, resize_center_crop, sample_seed
from rlcf_bench.types import RunProtocol, config_from_pairs

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _img(seed=0, h=40, w=56):
    return (torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


def test_views_are_deterministic_per_sample_and_view0_is_the_centre_crop():
    img = _img()
    a = make_views(img, n_views=8, size=32, mean=MEAN, std=STD, augmix=False, seed=sample_seed(0, "s1"))
    b = make_views(img, n_views=8, size=32, mean=MEAN, std=STD, augmix=False, seed=sample_seed(0, "s1"))
    c = make_views(img, n_views=8, size=32, mean=MEAN, std=STD, augmix=False, seed=sample_seed(0, "s2"))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a[1:], c[1:])
    assert torch.allclose(a[0], normalize(resize_center_crop(img, 32), MEAN, STD))
    assert not torch.allclose(a[1], a[2])


def test_augmix_views_are_reproducible_and_different():
    img = _img(1)
    a = make_views(img, n_views=4, size=32, mean=MEAN, std=STD, augmix=True, seed=7)
    b = make_views(img, n_views=4, size=32, mean=MEAN, std=STD, augmix=True, seed=7)
    plain = make_views(img, n_views=4, size=32, mean=MEAN, std=STD, augmix=False, seed=7)
    assert torch.equal(a, b) and not torch.allclose(a[1:], plain[1:]) and torch.equal(a[0], plain[0])


@pytest.mark.parametrize("augmix", [False, True])
def test_some_views_are_the_same_bits_as_those_rows_of_the_full_set(augmix: bool) -> None:
    img = _img(2)
    full = make_views(img, n_views=32, size=32, mean=MEAN, std=STD, augmix=augmix, seed=11)
    for only in ([5, 0, 31], [17], [0], [3, 3, 9]):
        some = make_views(img, n_views=32, size=32, mean=MEAN, std=STD, augmix=augmix, seed=11, only=only)
        assert torch.equal(some, full[only])
    with pytest.raises(IndexError, match="out of range"):
        make_views(img, n_views=32, size=32, mean=MEAN, std=STD, augmix=augmix, seed=11, only=[32])


def test_a_batch_cuts_only_the_selected_views_and_they_equal_the_full_sets_rows() -> None:
    from rlcf_bench.types import Batch

    imgs = [_img(k) for k in range(3)]
    cut: list[list[int]] = []

    def views(row: int, only=None):
        if only is not None:
            cut.append(list(only))
        return make_views(imgs[row], n_views=16, size=32, mean=MEAN, std=STD, augmix=False, seed=row, only=only)

    idx = torch.tensor([[4, 1, 0], [15, 2, 7], [9, 9, 3]])
    lazy = Batch(sample_ids=("a", "b", "c"), indices=(0, 1, 2), row_view_fn=views, row_subset_view_fn=views)
    selected = lazy.select_views(idx)
    assert cut == idx.tolist() and lazy._views is None  # nothing but the selected views was generated
    full = Batch(sample_ids=("a", "b", "c"), indices=(0, 1, 2), row_view_fn=views)
    expected = full.views[torch.arange(3).unsqueeze(1), idx]
    assert selected.shape == (3, 3, 3, 32, 32) and torch.equal(selected, expected)
    assert torch.equal(full.select_views(idx), expected)  # the full set, once generated, is indexed


def test_crop_boxes_follow_the_random_resized_crop_ranges():
    boxes = crop_boxes(100, 200, torch.rand(500, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = w * h / (100 * 200)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 200).all() and (boxes[:, 3] <= 100).all()
    assert area.min() >= 0.07 and area.max() <= 1.0
    assert ((w / h) >= 0.74).all() and ((w / h) <= 1.34).all()


def test_protocol_hash_changes_with_any_field():
    base = RunProtocol()
    assert base.hash == RunProtocol().hash
    for change in ({"seed": 1}, {"n_views": 32}, {"limit": 5}, {"precision": "fp32"}, {"params": (("k", 1),)}):
        assert RunProtocol(**change).hash != base.hash
    assert RunProtocol(n_views=64, selection_ratio=0.1).n_selected == 6


@dataclasses.dataclass(frozen=True)
class Cfg:
    lr: float = 1e-3
    steps: int = 1
    coop: str | None = None
    momentum: bool = False


def test_method_options_are_coerced_to_the_field_types():
    cfg = config_from_pairs(Cfg, [("lr", "7e-3"), ("steps", "3"), ("coop", "none"), ("momentum", "true")])
    assert cfg == Cfg(lr=7e-3, steps=3, coop=None, momentum=True)
    with pytest.raises(ValueError, match="cannot read 'x' as int"):
        config_from_pairs(Cfg, [("steps", "x")])
    with pytest.raises(ValueError, match="valid options: coop, lr, momentum, steps"):
        config_from_pairs(Cfg, [("nope", "1")])


def test_truncated_text_encoding_equals_full_length():
    from rlcf_bench.tta.vlm import OpenClipVLM
    from rlcf_bench_fixtures.tiny import build_tiny_clip

    model, tok = build_tiny_clip()
    vlm = OpenClipVLM(model, tok, name="tiny", image_size=32)
    tokens = vlm.tokenize(["a photo of a dog.", "a red star", "x"])
    full = model.encode_text(tokens)
    short = vlm.encode_text(tokens)
    assert torch.allclose(full, short, atol=1e-6)
    assert int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]  # it really did truncate


def test_methods_are_registered_per_name_and_task():
    from rlcf_bench import Method, MethodSpec, Predictions
    from rlcf_bench.registry import MethodRegistry, RegistryError

    @dataclasses.dataclass(frozen=True)
    class A:
        lr: float = 1e-6
        k_a: int = 3

    @dataclasses.dataclass(frozen=True)
    class B:
        lr: float = 2e-6

    def impl(cfg_cls, task, provider="p"):
        class Impl(Method[cfg_cls]):
            name, config_cls, tasks = "both", cfg_cls, frozenset({task})

            def setup(self, ctx):
                pass

            def predict(self, batch):
                return Predictions()

        import dataclasses as dc

        return dc.replace(MethodSpec.from_method(Impl), provider=provider)

    reg = MethodRegistry("methods", [impl(A, "a"), impl(B, "b")])
    assert reg.names() == ["both"] and reg.tasks_of("both") == {"a", "b"}
    assert reg.get("both", "b").config_cls is B  # each task keeps its own config and defaults
    assert reg.config("both", "b", []) == B() and reg.config("both", "b", [("lr", "5e-6")]) == B(lr=5e-6)
    assert reg.config("both", "a", [("k_a", "7")]) == A(k_a=7)
    with pytest.raises(ValueError, match="unknown option 'k_a'.*on the b task"):
        reg.config("both", "b", [("k_a", "7")])
    with pytest.raises(RegistryError, match="does not support task 'c'"):
        reg.get("both", "c")
    with pytest.raises(RegistryError, match="one implementation per task"):
        reg.get("both")
    assert reg.summary("both").tasks == {"a", "b"}
    with pytest.raises(RegistryError, match="for task 'a' is registered twice: by plugin 'p' and by plugin 'q'"):
        MethodRegistry("methods", [impl(A, "a"), impl(B, "a", provider="q")])


def test_a_captioner_is_no_dual_encoder_for_a_method_that_needs_one() -> None:
    """``ctx.vlm`` (the typed view of ``ctx.model`` the TTA toolkit uses) names the model, in a
    one-line PluginError, when a run hands a method something without image features, e.g. a captioner."""
    import torch

    from rlcf_bench.errors import PluginError
    from rlcf_bench.types import MethodContext, RunProtocol

    class Captioner:
        name = "cap"
        kind = "captioner"

    ctx = MethodContext(task="classification", protocol=RunProtocol(), device=torch.device("cpu"), amp=None,
                        model=Captioner())  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="'cap' is a Captioner"):
        _ = ctx.vlm
