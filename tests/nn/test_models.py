"""Model registry, shapes, read-out convention, int8 trunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import small_vgg
from imac.errors import ConfigError, ShapeError
from imac.nn.models import build_model, get_spec, list_models
from imac.nn.quant import Int8Trunk, fake_quant, fold_batchnorm


def test_registry_names() -> None:
    names = [s.name for s in list_models()]
    for n in ("mlp-mnist", "lenet-mnist", "vgg11-cifar10", "vgg11-full-cifar10",
              "vgg13-full-cifar10", "vgg16-full-cifar10"):
        assert n in names
    with pytest.raises(ConfigError, match="lenet-mnist"):
        get_spec("resnet-imagenet")


@pytest.mark.parametrize("name, sizes", [
    ("mlp-mnist", [784, 16, 10]),
    ("lenet-mnist", [400, 120, 84, 10]),
    ("vgg11-cifar10", [256, 512, 512, 10]),
])
def test_shapes(name: str, sizes: list[int]) -> None:
    torch.manual_seed(0)
    m = build_model(name).eval()
    assert m.fc_layer_sizes() == sizes
    assert len(m.layer_scales()) == len(sizes) - 1
    imgs = np.random.default_rng(0).integers(0, 256, (3, *m.input_shape), dtype=np.uint8)
    x = m.prepare(imgs)
    y = m(x)
    assert y.shape == (3, 10) and (y > 0).all() and (y < 1).all()
    # read-out: lowest neuron output == highest pre-activation
    u_last = m.head.forward_all(m.imac_input(x))[-1][0]
    assert torch.equal(m.predict(x), u_last.argmax(1))
    # the IMAC input is +-1 exactly
    assert set(m.imac_input(x).unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(ShapeError):
        m.prepare(np.zeros((2, 5, 5), np.uint8))


def test_full_vgg_sizes() -> None:
    # sizes come from the spec without allocating the 4096-wide heads twice
    for arch, n_conv in (("vgg11", 8), ("vgg13", 10), ("vgg16", 13)):
        spec = get_spec(f"{arch}-full-cifar10")
        assert spec.spec.head.hidden == (4096, 4096) and not spec.trainable_here
        m = build_model(f"{arch}-full-cifar10", {"head.hidden": [8], "head.float_head": None})
        assert m.fc_layer_sizes() == [512, 8, 10]
        assert sum(isinstance(x, torch.nn.Conv2d) for x in m.trunk) == n_conv


def test_lenet_variants() -> None:
    torch.manual_seed(0)
    m = build_model("lenet-mnist").eval()
    imgs = np.random.default_rng(1).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    x = m.prepare(imgs)
    assert x.shape == (16, 1, 32, 32)
    trunk = m.int8_trunk().calibrate(x)
    preds = m.predict_variants(x, trunk)
    assert set(preds) == {"accuracy", "accuracy_float", "accuracy_int8", "accuracy_float_int8"}
    f, fq = m.features(x), m.features(x, trunk)
    # int8 features stay within a few quantization steps of float ones
    assert (f - fq).abs().max() < 0.05


def test_fake_quant_grid() -> None:
    x = torch.tensor([-1.0, -0.004, 0.0, 0.5, 2.0])
    q = fake_quant(x, 1 / 127)
    assert torch.allclose(q * 127, torch.round(q * 127))
    assert q.max() == 1.0 and q.min() == -1.0
    assert fake_quant(torch.tensor([-1.0, 3.0]), 0.01, signed=False).tolist() == pytest.approx(
        [0.0, 2.55])


def test_fold_batchnorm_equivalent() -> None:
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU())
    trunk.train()
    trunk(torch.randn(8, 3, 6, 6) * 2 + 1)  # give the BN non-trivial statistics
    trunk.eval()
    with torch.no_grad():
        trunk[1].weight.uniform_(0.5, 2)
        trunk[1].bias.uniform_(-1, 1)
    folded = fold_batchnorm(trunk)
    assert len(folded) == 2
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(folded(x), trunk(x), atol=1e-5, rtol=1e-5)
    q = Int8Trunk(trunk).calibrate(x)
    assert q.calibration()[0][0] > 0
    assert q.calibration()[-1][1] is False  # after ReLU: unsigned
    torch.testing.assert_close(q(x), trunk(x), atol=0.1, rtol=0.05)


def test_lenet_normalize_and_old_configs() -> None:
    imgs = np.zeros((2, 28, 28), dtype=np.uint8)
    imgs[:, 10:18, 10:18] = 255
    raw = build_model("lenet-mnist", {"input.normalize": False}).prepare(imgs)
    std = build_model("lenet-mnist").prepare(imgs)  # the registered model standardises
    assert raw.min() == 0.0 and raw.max() == 1.0
    # padding and background alike map to -mean/std; a white pixel to (1 - mean)/std
    assert std[0, 0, 0, 0].item() == pytest.approx(-0.1307 / 0.3081, rel=1e-5)
    assert std.max().item() == pytest.approx((1 - 0.1307) / 0.3081, rel=1e-5)
    # a checkpoint written before network specs: its builder arguments map onto the shipped spec
    from imac.nn.models import legacy_spec

    old = legacy_spec("lenet-mnist", {"hidden": [120, 84], "scales": [0.1, 0.5, 0.5], "normalize": False})
    assert not old.input.normalize and old.head.hidden == (120, 84)


def test_label_smoothing_float_head_only() -> None:
    torch.manual_seed(0)
    m = build_model("lenet-mnist").eval()
    x = m.prepare(np.random.default_rng(2).integers(0, 256, (8, 28, 28), dtype=np.uint8))
    y = torch.arange(8) % 10
    plain, s0 = m.loss(x, y)
    smooth, s1 = m.loss(x, y, label_smoothing=0.1)
    torch.testing.assert_close(s0, s1)  # IMAC read-out untouched
    f = m.features(x)
    expected = (plain - torch.nn.functional.cross_entropy(m.float_head(f), y)
                + torch.nn.functional.cross_entropy(m.float_head(f), y, label_smoothing=0.1))
    torch.testing.assert_close(smooth, expected)


def test_vgg_channels_last_same_numbers() -> None:
    torch.manual_seed(0)
    m = small_vgg([16]).eval()
    x = m.prepare(np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    torch.testing.assert_close(m.features(x), m.trunk(x.contiguous()), atol=1e-5, rtol=1e-5)


def test_vgg_cutout_square() -> None:
    """Cutout zeroes one square of at most cutout x cutout pixels (all channels) per image,
    exactly that square when it lies inside, and nothing else changes."""
    m = small_vgg([16, 16])
    x = torch.randn(300, 3, 32, 32).abs() + 0.1  # no zeros of its own
    torch.manual_seed(3)
    plain = m.augment(x, cutout=0)
    torch.manual_seed(3)
    cut = m.augment(x, cutout=8)
    removed = (plain != 0) & (cut == 0)
    per_image = removed.all(1).sum((1, 2))
    assert (removed.any(1) == removed.all(1)).all()  # every channel of a pixel, or none
    assert int(per_image.max()) == 64 and float(per_image.float().mean()) > 40
    assert torch.equal(cut[~removed], plain[~removed])
    # the removed pixels of each image form one axis-aligned rectangle
    for img in removed.all(1)[:50]:
        ys, xs = torch.nonzero(img, as_tuple=True)
        if len(ys):
            h = int(ys.max() - ys.min() + 1)
            w = int(xs.max() - xs.min() + 1)
            assert h <= 8 and w <= 8
            # pixels of the rectangle that were already zero (crop padding) are not counted
            assert len(ys) <= h * w


def test_vgg_registry_trains_with_cutout() -> None:
    aug = get_spec("vgg11-cifar10").spec.train.augment
    assert aug.flip and aug.crop_pad == 4 and aug.cutout > 0
