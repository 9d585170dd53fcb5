"""User data sets declared in a YAML data spec: npy, npz, idx and image folders, hold-out splits,
normalization, and one clear error per bad input."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imac.errors import ConfigError, DataError, ShapeError
from imac.nn.data import Dataset, load_dataset, load_mnist, n_classes
from imac.nn.userdata import DataSpec, holdout_indices, load_data_spec, load_user_dataset, prepare_images
from imac.provenance import data_used, repo_root


def idx_bytes(arr: np.ndarray) -> bytes:
    """This test's own IDX writer: magic 00 00 08 ndim, big-endian dims, then the bytes."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def toy(n: int = 30, shape: tuple[int, ...] = (6, 5), classes: int = 3, seed: int = 0,
        dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.int64)
    images = rng.integers(0, 200, size=(n, *shape)).astype(dtype)
    return images, labels


def write_spec(folder: Path, text: str, name: str = "data.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text)
    return p


def npy_set(tmp: Path, n_train: int = 30, n_test: int = 12, **kw: object) -> Path:
    (tmp / "arr").mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        im, lab = toy(n, seed=seed, **kw)  # type: ignore[arg-type]
        np.save(tmp / "arr" / f"{split}_x.npy", im)
        np.save(tmp / "arr" / f"{split}_y.npy", lab)
    return write_spec(tmp, """
name: toy
format: npy
train: {images: arr/train_x.npy, labels: arr/train_y.npy}
test: {images: arr/test_x.npy, labels: arr/test_y.npy}
input_shape: [6, 5]
""")


def png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def folder_set(root: Path, classes: tuple[str, ...] = ("cat", "dog", "emu"), per_class: int = 4,
               shape: tuple[int, ...] = (8, 7, 3), seed: int = 0) -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(seed)
    written = {}
    for c, name in enumerate(classes):
        for i in range(per_class):
            arr = np.clip(40 * c + rng.integers(0, 30, shape), 0, 255).astype(np.uint8)
            png(root / name / f"{i:03d}.png", arr)
            written[(name, f"{i:03d}.png")] = arr
    return written


# -- formats -------------------------------------------------------------------------------
def test_npy_loads_with_shapes_labels_classes(tmp_path: Path) -> None:
    p = npy_set(tmp_path)
    train = load_user_dataset(p, "train")
    test = load_user_dataset(str(p), "test")
    im, lab = toy(30, seed=0)
    assert isinstance(train, Dataset) and train.name == "toy" and train.split == "train"
    assert train.images.dtype == np.uint8 and train.images.shape == (30, 6, 5)
    np.testing.assert_array_equal(train.images, im)
    np.testing.assert_array_equal(train.labels, lab)
    assert train.labels.dtype == np.int64
    assert test.images.shape == (12, 6, 5) and train.classes == ("0", "1", "2")
    assert len(load_user_dataset(p, "train", limit=7)) == 7
    # provenance: the files read and the spec itself, under name/split
    assert {Path(s).name for s in train.sources} == {"train_x.npy", "train_y.npy", "data.yaml"}
    assert any(d["data"] == "toy/train" for d in data_used())
    assert train.sha256 != test.sha256 and len(train.sha256) == 64


def test_float_images_kept_as_float32_and_normalized(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 17, size=(20, 8, 8)).astype(np.float64)  # like sklearn digits: floats 0..16
    y = np.arange(20) % 4
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    p = write_spec(tmp_path, """
name: digits
format: npy
train: {images: x.npy, labels: y.npy}
split: {test_fraction: 0.25, seed: 1}
input_shape: [8, 8]
scale: 0.0625
mean: 0.5
std: [0.25]
""")
    spec = load_data_spec(p)
    d = load_user_dataset(spec, "train")
    assert d.images.dtype == np.float32 and d.images.shape[1:] == (8, 8)
    t = spec.normalize(d.images)
    assert t.dtype == torch.float32 and t.shape == (len(d), 1, 8, 8)
    expected = (d.images / 16.0 - 0.5) / 0.25
    np.testing.assert_allclose(t[:, 0].numpy(), expected, rtol=1e-6)
    assert n_classes(spec) == 4 and n_classes(p) == 4 and n_classes("mnist") == 10


def test_prepare_images_hwc_per_channel(tmp_path: Path) -> None:
    spec = DataSpec(name="rgb", format="npy", train={"images": "a.npy", "labels": "b.npy"},
                    split={"test_fraction": 0.5}, input_shape=[4, 3, 3], mean=[0.1, 0.2, 0.3], std=[1, 2, 4])
    x = np.arange(2 * 4 * 3 * 3, dtype=np.uint8).reshape(2, 4, 3, 3)
    t = prepare_images(spec, x)
    assert t.shape == (2, 3, 4, 3)
    for c, (m, s) in enumerate(((0.1, 1), (0.2, 2), (0.3, 4))):
        np.testing.assert_allclose(t[:, c].numpy(), (x[..., c] / 255.0 - m) / s, rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match=r"\(2, 4, 3\).*input_shape \(4, 3, 3\)"):
        prepare_images(spec, x[..., 0])


def test_npz_default_and_explicit_keys(tmp_path: Path) -> None:
    im, lab = toy(24, shape=(5, 5, 2))
    im2, lab2 = toy(9, shape=(5, 5, 2), seed=4)
    np.savez(tmp_path / "all.npz", x=im, y=lab)
    np.savez(tmp_path / "both.npz", x_train=im, y_train=lab, x_test=im2, y_test=lab2)
    p = write_spec(tmp_path, """
name: z
format: npz
train: {file: all.npz}
test: {file: both.npz, images_key: x_test, labels_key: y_test}
input_shape: [5, 5, 2]
""")
    tr, te = load_user_dataset(p, "train"), load_user_dataset(p, "test")
    np.testing.assert_array_equal(tr.images, im)
    np.testing.assert_array_equal(te.labels, lab2)
    assert te.images.shape == (9, 5, 5, 2)
    assert prepare_images(load_data_spec(p), te.images).shape == (9, 2, 5, 5)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_gz_or_not(tmp_path: Path, gz: bool) -> None:
    for split, seed in (("train", 0), ("test", 1)):
        im, lab = toy(20 if split == "train" else 9, shape=(7, 7), seed=seed)
        for kind, arr in (("img", im), ("lab", lab)):
            data = idx_bytes(arr)
            path = tmp_path / "idx" / f"{split}-{kind}.idx{'.gz' if gz else ''}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(gzip.compress(data) if gz else data)
    ext = ".gz" if gz else ""
    p = write_spec(tmp_path, f"""
name: idxset
format: idx
train: {{images: idx/train-img.idx{ext}, labels: idx/train-lab.idx{ext}}}
test: {{images: idx/test-img.idx{ext}, labels: idx/test-lab.idx{ext}}}
input_shape: [7, 7]
classes: [a, b, c]
""")
    d = load_dataset(p, "test")  # the load_dataset hook
    np.testing.assert_array_equal(d.images, toy(9, shape=(7, 7), seed=1)[0])
    assert d.classes == ("a", "b", "c") and d.images.dtype == np.uint8


def test_folder_loads_rgb_and_grey_and_caches(tmp_path: Path, isolated_cache: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    written = folder_set(tmp_path / "imgs" / "train")
    folder_set(tmp_path / "imgs" / "test", per_class=2, seed=1)
    p = write_spec(tmp_path, """
name: pets
format: folder
train: {root: imgs/train}
test: {root: imgs/test}
input_shape: [8, 7, 3]
""")
    d = load_user_dataset(p, "train")
    assert d.images.shape == (12, 8, 7, 3) and d.classes == ("cat", "dog", "emu")
    assert list(d.labels[:6]) == [0, 1, 2, 0, 1, 2]  # classes interleaved: a limit stays balanced
    np.testing.assert_array_equal(d.images[1], written[("dog", "000.png")])
    assert len(d.sources) == 13  # 12 images + the spec
    cached = list((isolated_cache / "datasets").glob("user-pets-*.npz"))
    assert len(cached) == 1
    # the second load comes from the cache (no decoding)
    import imac.nn.userdata as ud

    monkeypatch.setattr(ud, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    again = load_user_dataset(p, "train")
    np.testing.assert_array_equal(again.images, d.images)
    assert again.sha256 == d.sha256
    monkeypatch.undo()
    # grey: converted to L, stored (N, H, W); with [H, W, 1] stored (N, H, W, 1)
    spec = DataSpec(name="pets-grey", format="folder", train={"root": str(tmp_path / "imgs" / "train")},
                    split={"test_fraction": 0.5, "seed": 0}, input_shape=[8, 7], classes=["emu", "cat", "dog"])
    g = load_user_dataset(spec, "test", cache=False)
    assert g.images.shape == (6, 8, 7) and g.classes == ("emu", "cat", "dog")
    assert np.bincount(g.labels).tolist() == [2, 2, 2]
    assert load_user_dataset(spec.model_copy(update={"input_shape": [8, 7, 1]}), "train").images.shape == (6, 8, 7, 1)


# -- image folders: colour modes and resize -------------------------------------------------
def save_image(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    """``arr`` saved at ``path`` (format from the suffix), converted to ``mode`` first if given."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    (im.convert(mode) if mode else im).save(path)


def mixed_folder(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Two classes of images in every size and mode a user's folder may hold; returns the
    source array of each file (HxW or HxWxC, before the mode the file is saved in)."""
    from PIL import Image

    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return rng.integers(0, 256, shape).astype(np.uint8)

    files = {
        "a/0_rgb.png": (rand(20, 10, 3), None),
        "a/1_grey.png": (rand(5, 9), None),
        "a/2_rgba.png": (rand(8, 7, 4), None),  # already 8x7: never resampled
        "a/3_photo.jpg": (rand(30, 40, 3), None),
        "b/0_palette.png": (rand(16, 14, 3), "P"),
        "b/1_grey_alpha.png": (rand(3, 30, 2), None),
        "b/2_bilevel.bmp": (rand(12, 12), "1"),
        "b/3_tall.png": (rand(50, 2, 3), None),
    }
    for name, (arr, mode) in files.items():
        save_image(root / name, arr, mode)
    grey16 = (rng.integers(0, 65536, (11, 6))).astype(np.uint16)
    Image.fromarray(grey16).save(root / "b" / "4_grey16.png")
    return {**{k: a for k, (a, _) in files.items()}, "b/4_grey16.png": grey16}


FOLDER_SPEC = "name: mixed\nformat: folder\ntrain: {{root: imgs}}\ntest: {{root: imgs}}\n" \
              "input_shape: {shape}\n{resize}"


@pytest.mark.parametrize("resize", ["stretch", "fit", "crop"])
@pytest.mark.parametrize("shape", [[8, 7, 3], [8, 7], [8, 7, 1]])
def test_folder_resize_brings_every_size_and_mode_to_input_shape(tmp_path: Path, resize: str,
                                                                 shape: list[int]) -> None:
    from PIL import Image

    src = mixed_folder(tmp_path / "imgs")
    p = write_spec(tmp_path, FOLDER_SPEC.format(shape=shape, resize=f"resize: {resize}\n"))
    d = load_user_dataset(p, "train", cache=False)
    assert d.images.shape == (len(src), *shape) and d.images.dtype == np.uint8
    assert d.classes == ("a", "b") and np.bincount(d.labels).tolist() == [4, 5]
    order = [Path(s).relative_to(tmp_path / "imgs").as_posix() for s in d.sources if Path(s).suffix != ".yaml"]
    # an image of the declared size is only converted, never resampled
    k = order.index("a/2_rgba.png")
    mode = "RGB" if len(shape) == 3 and shape[2] == 3 else "L"
    rgba = Image.fromarray(src["a/2_rgba.png"])
    expected = np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert(mode))
    np.testing.assert_array_equal(d.images[k].reshape(expected.shape), expected)
    # the first class's RGB image went through Pillow's bilinear filter, as documented
    k = order.index("a/0_rgb.png")
    rgb = Image.fromarray(src["a/0_rgb.png"]).convert(mode)
    if resize == "stretch":
        ref = rgb.resize((7, 8), Image.Resampling.BILINEAR)
    elif resize == "crop":
        from PIL import ImageOps

        ref = ImageOps.fit(rgb, (7, 8), Image.Resampling.BILINEAR)
    else:  # 20x10 into 8x7: scaled by 0.4 to 8x4, columns 1..4, 0 padded
        ref = Image.new(mode, (7, 8), 0)
        ref.paste(rgb.resize((4, 8), Image.Resampling.BILINEAR), (1, 0))
    np.testing.assert_array_equal(d.images[k].reshape(8, 7, -1), np.asarray(ref).reshape(8, 7, -1))


def test_folder_resize_geometry_of_fit_and_crop(tmp_path: Path) -> None:
    # 8x21 (HxW): three vertical stripes, 7 columns each
    stripes = np.repeat(np.array([50, 150, 250], np.uint8), 7)[None, :].repeat(8, axis=0)
    save_image(tmp_path / "imgs" / "a" / "wide.png", stripes)
    save_image(tmp_path / "imgs" / "b" / "tall.png", np.full((16, 7), 200, np.uint8))  # 16x7
    out = {}
    for resize in ("stretch", "fit", "crop"):
        p = write_spec(tmp_path, FOLDER_SPEC.format(shape=[8, 7], resize=f"resize: {resize}\n"), name=f"{resize}.yaml")
        d = load_user_dataset(p, "train", cache=False)
        out[resize] = {d.classes[c]: im for c, im in zip(d.labels, d.images, strict=True)}
    # crop: scaled to cover (x1 here), the overflow cut equally from both sides: the middle stripe
    assert (out["crop"]["a"] == 150).all()
    assert (out["crop"]["b"] == 200).all()  # 16x7 covers 8x7 at x1: rows 4..11 kept
    # fit: 8x21 scaled by 1/3 to 3x7 (2.67 rows round to 3), centred: rows 2..4, zero rows above
    # and below (the odd one below); 16x7 scaled by 1/2 to 8x4 (3.5 rounds to 4): one zero
    # column on the left, two on the right
    a = out["fit"]["a"]
    assert (a[2:5] == out["stretch"]["a"][0]).all() and (a[[0, 1, 5, 6, 7]] == 0).all()
    assert (out["fit"]["b"][:, 1:5] == 200).all() and (out["fit"]["b"][:, [0, 5, 6]] == 0).all()
    # stretch: every source column counts (bilinear, widened when shrinking), the aspect is lost
    assert out["stretch"]["a"][0].tolist() == [50, 50, 117, 150, 183, 250, 250]
    assert (out["stretch"]["b"] == 200).all()


def test_folder_fit_keeps_a_thin_line(tmp_path: Path) -> None:
    save_image(tmp_path / "imgs" / "a" / "line.png", np.full((1, 300), 255, np.uint8))
    save_image(tmp_path / "imgs" / "b" / "dot.png", np.full((1, 1), 9, np.uint8))
    p = write_spec(tmp_path, FOLDER_SPEC.format(shape=[8, 7], resize="resize: fit\n"))
    d = load_user_dataset(p, "train", cache=False)
    line, dot = d.images[d.labels == 0][0], d.images[d.labels == 1][0]
    assert line[3].tolist() == [255] * 7 and line.sum() == 7 * 255  # one row, at row (8 - 1) // 2
    assert (dot[:7] == 9).all() and (dot[7] == 0).all()  # 1x1 scaled by 7: 7x7, the odd row padded below


def test_folder_colour_modes_convert_by_channel_count(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "imgs"
    grey = np.arange(56, dtype=np.uint8).reshape(8, 7) * 4
    save_image(root / "a" / "grey.png", grey)
    rgba = np.zeros((8, 7, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 0  # top half fully transparent red: black
    rgba[4:, :, 3] = 255  # bottom half opaque red
    rgba[7, 6] = (200, 100, 50, 128)  # half transparent: half the colour
    save_image(root / "a" / "rgba.png", rgba)
    pal = Image.new("P", (7, 8), 0)
    pal.putpalette([255, 255, 255, 10, 200, 30] + [0] * 762)
    for x in range(7):
        pal.putpixel((x, 0), 1)
    (root / "b").mkdir()
    pal.save(root / "b" / "pal.png", transparency=0)  # index 0 (white) transparent
    g16 = np.full((8, 7), 65535, np.uint16)
    g16[0, :3] = (0, 32768, 5000)
    Image.fromarray(g16).save(root / "b" / "grey16.png")
    rgb_spec = write_spec(tmp_path, FOLDER_SPEC.format(shape=[8, 7, 3], resize=""), name="rgb.yaml")
    d = load_user_dataset(rgb_spec, "train", cache=False)
    by = {Path(s).name: im for s, im in zip([s for s in d.sources if Path(s).suffix != ".yaml"], d.images,
                                             strict=True)}
    # grey -> RGB: the grey value in all three channels
    np.testing.assert_array_equal(by["grey.png"], np.repeat(grey[..., None], 3, axis=2))
    # RGBA: composited onto black
    assert (by["rgba.png"][:4] == 0).all() and (by["rgba.png"][4:7, :] == (255, 0, 0)).all()
    assert np.abs(by["rgba.png"][7, 6].astype(int) - (100, 50, 25)).max() <= 1
    # palette with a transparent index: transparent -> black, others their palette colour
    assert (by["pal.png"][0] == (10, 200, 30)).all() and (by["pal.png"][1:] == 0).all()
    # 16-bit grey: the full range scaled to 0..255 (Pillow's own convert would clip at 255)
    assert by["grey16.png"][0, :4, 0].tolist() == [0, 128, 19, 255]
    # RGB -> grey with Pillow's ITU-R 601-2 luma, alpha composited first
    grey_spec = write_spec(tmp_path, FOLDER_SPEC.format(shape=[8, 7], resize=""), name="grey.yaml")
    g = load_user_dataset(grey_spec, "train", cache=False)
    byg = {Path(s).name: im for s, im in zip([s for s in g.sources if Path(s).suffix != ".yaml"], g.images,
                                              strict=True)}
    np.testing.assert_array_equal(byg["grey.png"], grey)
    assert (byg["rgba.png"][:4] == 0).all() and (byg["rgba.png"][4:7] == 76).all()  # 0.299 * 255
    assert byg["grey16.png"][0, :4].tolist() == [0, 128, 19, 255]


def test_folder_mode_without_a_grey_or_rgb_form_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    folder_set(tmp_path / "imgs", classes=("a", "b"), per_class=1, shape=(8, 7))
    # a float image (Pillow reads by content, so a TIFF named .png is still opened)
    Image.fromarray(np.full((8, 7), 0.5, np.float32)).save(tmp_path / "imgs" / "a" / "float.png", format="TIFF")
    for skip in ("", ", skip_bad: true"):  # it decodes fine: skip_bad does not hide it
        p = write_spec(tmp_path, f"name: m\nformat: folder\ntrain: {{root: imgs{skip}}}\ntest: {{root: imgs}}\n"
                                 "input_shape: [8, 7, 3]\nresize: stretch\n")
        with pytest.raises(DataError) as err:
            load_user_dataset(p, "train", cache=False)
        _one_line(err, str(p), "float.png", "mode 'F'", "8-bit grey, RGB or RGBA")


def test_folder_cache_follows_resize(tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imac.nn.userdata as ud

    mixed_folder(tmp_path / "imgs")
    p = tmp_path / "data.yaml"
    loaded = {}
    for resize in ("stretch", "crop", "fit"):
        write_spec(tmp_path, FOLDER_SPEC.format(shape=[8, 7, 3], resize=f"resize: {resize}\n"))
        loaded[resize] = load_user_dataset(p, "train")
        fresh = load_user_dataset(p, "train", cache=False)
        np.testing.assert_array_equal(loaded[resize].images, fresh.images)  # never a stale array
    assert len(list((isolated_cache / "datasets").glob("user-mixed-*.npz"))) == 3
    assert not np.array_equal(loaded["stretch"].images, loaded["crop"].images)
    assert not np.array_equal(loaded["crop"].images, loaded["fit"].images)
    assert len({d.sha256 for d in loaded.values()}) == 3  # the data set's digest follows resize too
    # back to stretch: served from its own cache file, no decoding
    monkeypatch.setattr(ud, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    write_spec(tmp_path, FOLDER_SPEC.format(shape=[8, 7, 3], resize="resize: stretch\n"))
    np.testing.assert_array_equal(load_user_dataset(p, "train").images, loaded["stretch"].images)
    # the default (resize: none) keeps the spec digest of specs written before resize existed
    assert "resize" not in ud._spec_digest(load_data_spec(npy_set(tmp_path / "n")))
    assert "resize" in ud._spec_digest(load_data_spec(p))
    # a folder's digest follows the decoding rules and filter too: the same files, other pixels
    before = ud._spec_digest(load_data_spec(p))
    monkeypatch.setattr(ud, "DECODE_VERSION", ud.DECODE_VERSION + 1)
    assert ud._spec_digest(load_data_spec(p)) != before
    monkeypatch.setattr(ud, "RESAMPLE", "bicubic")
    assert "bicubic" in ud._spec_digest(load_data_spec(p))


def test_holdout_is_stratified_and_reproducible(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(4), [10, 20, 40, 5])
    tr, te = holdout_indices(labels, 0.2, seed=7)
    assert np.bincount(labels[te]).tolist() == [2, 4, 8, 1]
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(labels.size))
    _, te2 = holdout_indices(labels, 0.2, seed=7)
    np.testing.assert_array_equal(te, te2)
    _, te3 = holdout_indices(labels, 0.2, seed=8)
    assert not np.array_equal(te, te3)
    # through a spec: train and test disjoint, reproducible by seed
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (75, 3, 3)).astype(np.uint8)
    x[:, 0, 0] = np.arange(75)  # a sample's id
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    text = "name: h\nformat: npy\ntrain: {{images: x.npy, labels: y.npy}}\ninput_shape: [3, 3]\n" \
           "split: {{test_fraction: 0.2, seed: {seed}}}\n"
    p = write_spec(tmp_path, text.format(seed=7))
    a_tr, a_te = load_user_dataset(p, "train"), load_user_dataset(p, "test")
    ids_tr, ids_te = set(a_tr.images[:, 0, 0].tolist()), set(a_te.images[:, 0, 0].tolist())
    assert not ids_tr & ids_te and len(ids_tr | ids_te) == 75
    assert np.bincount(a_te.labels).tolist() == [2, 4, 8, 1]
    np.testing.assert_array_equal(load_user_dataset(p, "test").images, a_te.images)
    p8 = write_spec(tmp_path, text.format(seed=8), name="other.yaml")
    assert not np.array_equal(load_user_dataset(p8, "test").images, a_te.images)
    assert load_user_dataset(p8, "test").sha256 != a_te.sha256


# -- MNIST through a data spec -------------------------------------------------------------
def _shared_mnist() -> Path | None:
    env = os.environ.get("IMAC_DATA_DIR")
    cands = [Path(env)] if env else []
    root = repo_root()
    cands += [root.parent / "shared" / "data"] if root else []
    cands.append(Path("../shared/data"))
    for c in cands:
        if (c / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return c / "mnist"
    return None


def test_mnist_idx_files_renamed_into_a_user_folder(tmp_path: Path) -> None:
    src = _shared_mnist()
    if src is None:
        pytest.skip("shared MNIST files not found (IMAC_DATA_DIR or ../shared/data/mnist)")
    user = tmp_path / "my digits"
    user.mkdir()
    shutil.copy(src / "t10k-images-idx3-ubyte.gz", user / "test-images.gz")
    shutil.copy(src / "t10k-labels-idx1-ubyte.gz", user / "test-labels.gz")
    spec = write_spec(tmp_path / "specs", """
name: my-digits
format: idx
test: {images: "../my digits/test-images.gz", labels: "../my digits/test-labels.gz"}
split: {test_fraction: 0.5, seed: 0}
input_shape: [28, 28]
""")
    # the hold-out of the whole file: train + test are MNIST's test split, in order
    tr, te = load_user_dataset(spec, "train"), load_user_dataset(spec, "test")
    ref = load_mnist("test", src.parent, download=False)
    assert len(tr) + len(te) == len(ref) == 10000 and tr.classes == tuple(str(i) for i in range(10))
    both = np.concatenate([tr.labels, te.labels])
    assert np.bincount(both).tolist() == np.bincount(ref.labels).tolist()
    # a two-source spec gives exactly load_mnist's arrays
    two = write_spec(tmp_path / "specs", """
name: my-digits
format: idx
train: {images: "../my digits/test-images.gz", labels: "../my digits/test-labels.gz"}
test: {images: "../my digits/test-images.gz", labels: "../my digits/test-labels.gz"}
input_shape: [28, 28]
scale: 0.00392156862745098
mean: 0.1307
std: 0.3081
""", name="two.yaml")
    d = load_dataset(str(two), "test")
    np.testing.assert_array_equal(d.images, ref.images)
    np.testing.assert_array_equal(d.labels, ref.labels)
    assert d.images.dtype == ref.images.dtype == np.uint8
    x = load_data_spec(two).normalize(d.images[:4])
    np.testing.assert_allclose(x.numpy()[:, 0], (ref.images[:4] / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)


# -- refusals ------------------------------------------------------------------------------
BASE = """
name: bad
format: npy
train: {images: arr/train_x.npy, labels: arr/train_y.npy}
test: {images: arr/test_x.npy, labels: arr/test_y.npy}
input_shape: [6, 5]
"""


def _one_line(err: pytest.ExceptionInfo[BaseException], *parts: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg


@pytest.mark.parametrize(("extra", "needle"), [
    ("colour: red\n", "colour: unknown key"),
    ("scale: 0\n", "scale must be > 0"),
    ("scale: true\n", "boolean"),
    ("std: [0]\n", "std: std must be > 0"),
    ("mean: [0.1, 0.2]\n", "mean has 2 values"),
    ("classes: [a, a, b]\n", "duplicate class names"),
    ("split: {test_fraction: 0.2}\n", "only for a single source"),
    ("resize: fit\n", "resize: only an image folder (format: folder) is resized"),  # npy: refused
])
def test_bad_yaml_keys_and_values(tmp_path: Path, extra: str, needle: str) -> None:
    p = write_spec(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as err:
        load_data_spec(p)
    _one_line(err, str(p), needle)


FOLDER = "name: x\nformat: folder\ntest: {root: r}\nsplit: {test_fraction: 0.5}\ninput_shape: [2, 2]\n"


@pytest.mark.parametrize(("text", "needle"), [
    ("name: x\nformat: npy\ninput_shape: [2, 2]\n", "give train and test"),
    ("name: x\nformat: npy\ntrain: {images: a, labels: b}\ninput_shape: [2, 2]\n", "only train is given"),
    ("name: x\nformat: npz\ntrain: {images: a, labels: b}\ntest: {file: c}\ninput_shape: [2, 2]\n",
     "train: format 'npz' needs file"),
    ("name: x\nformat: npy\ntrain: {images: a, labels: b, root: r}\ntest: {images: a, labels: b}\n"
     "input_shape: [2, 2]\n", "root not used by format 'npy'"),
    ("name: x\nformat: png\ntrain: {root: r}\ntest: {root: r}\ninput_shape: [2, 2]\n", "format:"),
    ("name: x\nformat: folder\ntrain: {root: r}\ntest: {root: r}\ninput_shape: [2, 2, 4]\n", "C=4"),
    ("name: x\nformat: npy\ntrain: {images: a, labels: b}\ntest: {images: a, labels: b}\ninput_shape: [2]\n",
     "input_shape"),
    ("name: mnist\nformat: npy\ntrain: {images: a, labels: b}\ntest: {images: a, labels: b}\n"
     "input_shape: [2, 2]\n", "built-in"),
    ("name: ../up\nformat: npy\ntrain: {images: a, labels: b}\ntest: {images: a, labels: b}\n"
     "input_shape: [2, 2]\n", "name"),
    ("name: x\nname: y\n", "duplicate key"),
    ("name: x\nformat: npy\ntrain: {images: a, labels: b}\nsplit: {test_fraction: 1.0}\ninput_shape: [2, 2]\n",
     "test_fraction must lie"),
    (FOLDER + "resize: zoom\n", "resize: Input should be 'none', 'stretch', 'fit' or 'crop' (got 'zoom')"),
    (FOLDER + "resize: Stretch\n", "resize: Input should be 'none', 'stretch', 'fit' or 'crop'"),
    (FOLDER + "resize:\n", "resize: Input should be 'none', 'stretch', 'fit' or 'crop' (got None)"),
    (FOLDER + "resize: no\n", "resize: YAML reads `no/off/false` as a boolean; write one of none, stretch, fit, crop"),
    (FOLDER + "train: {root: r, resize: fit}\n", "train.resize: unknown key"),  # a spec-wide key, not a source's
    ("name: x\nformat: idx\ntrain: {images: a, labels: b}\ntest: {images: a, labels: b}\ninput_shape: [2, 2]\n"
     "resize: crop\n", "resize: only an image folder (format: folder) is resized, format 'idx'"),
])
def test_bad_spec_structure(tmp_path: Path, text: str, needle: str) -> None:
    p = write_spec(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_data_spec(p)
    _one_line(err, str(p), needle)


def test_missing_spec_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_data_spec(tmp_path / "nope.yaml")
    p = npy_set(tmp_path)
    (tmp_path / "arr" / "test_y.npy").unlink()
    for split in ("train", "test"):  # without classes, n_classes is read from both splits' labels
        with pytest.raises(DataError) as err:
            load_user_dataset(p, split)
        _one_line(err, str(p), "test.labels: file not found", "test_y.npy")
    (tmp_path / "arr" / "test_y.npy").mkdir()
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "test")
    _one_line(err, "is not a file")


def _idx_spec(tmp: Path, images: bytes, labels: bytes) -> Path:
    (tmp / "i").mkdir(parents=True, exist_ok=True)
    (tmp / "i" / "x.idx").write_bytes(images)
    (tmp / "i" / "y.idx").write_bytes(labels)
    return write_spec(tmp, "name: i\nformat: idx\ntrain: {images: i/x.idx, labels: i/y.idx}\n"
                           "split: {test_fraction: 0.3}\ninput_shape: [4, 4]\n")


def test_corrupt_idx(tmp_path: Path) -> None:
    im, lab = toy(12, shape=(4, 4))
    good_x, good_y = idx_bytes(im), idx_bytes(lab)
    for bad_x, bad_y, needle, fname in (
        (good_x[:-5], good_y, "truncated", "x.idx"),
        (good_x, b"\x00\x00\x09\x01" + good_y[4:], "magic", "y.idx"),
        (gzip.compress(good_x)[:-9], good_y, "truncated or corrupt", "x.idx"),
        (good_x, idx_bytes(lab[:-1]), "12 images", "y.idx"),
    ):
        p = _idx_spec(tmp_path, bad_x, bad_y)
        with pytest.raises(DataError) as err:
            load_user_dataset(p, "train")
        _one_line(err, str(p), needle, fname)


def test_shape_mismatch_names_both_shapes(tmp_path: Path) -> None:
    p = npy_set(tmp_path)
    np.save(tmp_path / "arr" / "test_x.npy", toy(12, shape=(5, 6))[0])
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "test")
    _one_line(err, str(p), "test_x.npy", "(5, 6)", "input_shape says (6, 5)")


def test_label_out_of_range_and_not_integer(tmp_path: Path) -> None:
    p = write_spec(tmp_path, BASE + "classes: [a, b]\n", name="two.yaml")
    npy_set(tmp_path)  # labels 0..2, but only two classes declared
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, str(p), "label 2", "outside 0..1", "train_y.npy")
    np.save(tmp_path / "arr" / "train_y.npy", np.arange(30) % 2 - 0.5)
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, "not whole numbers", "train_y.npy")
    np.save(tmp_path / "arr" / "train_y.npy", -(np.arange(30) % 2))
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, "label -1")


def test_class_missing_from_a_split(tmp_path: Path) -> None:
    p = npy_set(tmp_path)
    np.save(tmp_path / "arr" / "test_y.npy", np.arange(12) % 2)  # class 2 only in train
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "test")
    _one_line(err, str(p), "test split has no sample of class(es) '2'")
    # a folder: a class with no images in the test root
    folder_set(tmp_path / "f" / "train", per_class=2)
    folder_set(tmp_path / "f" / "test", classes=("cat", "dog"), per_class=1)
    q = write_spec(tmp_path, "name: f\nformat: folder\ntrain: {root: f/train}\ntest: {root: f/test}\n"
                             "input_shape: [8, 7, 3]\n", name="f.yaml")
    with pytest.raises(DataError) as err:
        load_user_dataset(q, "test")
    _one_line(err, str(q), "no sample of class(es) 'emu'")
    # a hold-out cannot give a class of one sample to both splits
    np.save(tmp_path / "x.npy", toy(7)[0])
    np.save(tmp_path / "y.npy", np.array([0, 0, 0, 1, 1, 1, 2]))
    h = write_spec(tmp_path, "name: h\nformat: npy\ntrain: {images: x.npy, labels: y.npy}\n"
                             "split: {test_fraction: 0.5}\ninput_shape: [6, 5]\n", name="h.yaml")
    with pytest.raises(DataError) as err:
        load_user_dataset(h, "train")
    _one_line(err, str(h), "class '2' has 1 sample")


def test_count_mismatch_and_nan(tmp_path: Path) -> None:
    p = npy_set(tmp_path)
    np.save(tmp_path / "arr" / "train_y.npy", np.arange(29) % 3)
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, str(p), "30 images", "29 labels", "train_y.npy")
    x = toy(30, dtype=np.float32)[0]
    x[4, 2, 2] = np.nan
    np.save(tmp_path / "arr" / "train_x.npy", x)
    np.save(tmp_path / "arr" / "train_y.npy", np.arange(30) % 3)
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, str(p), "NaN", "sample 4", "train_x.npy")


def test_object_and_wrong_kind_files(tmp_path: Path) -> None:
    p = npy_set(tmp_path)
    np.save(tmp_path / "arr" / "train_x.npy", np.array([{"a": 1}] * 30, dtype=object), allow_pickle=True)
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, "Python objects", "train_x.npy")
    (tmp_path / "arr" / "train_x.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, "not a readable .npy", "train_x.npy")
    with open(tmp_path / "arr" / "train_x.npy", "wb") as fh:
        np.savez(fh, toy(30)[0])
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, "is an .npz archive; use format npz")
    np.savez(tmp_path / "z.npz", pics=toy(5)[0], labels=np.arange(5) % 3)
    z = write_spec(tmp_path, "name: z\nformat: npz\ntrain: {file: z.npz}\nsplit: {test_fraction: 0.4}\n"
                             "input_shape: [6, 5]\n", name="z.yaml")
    with pytest.raises(DataError) as err:
        load_user_dataset(z, "train")
    _one_line(err, str(z), "no array 'images' or 'x'", "pics", "images_key")


def test_corrupt_png_in_folder_and_skip_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder_set(tmp_path / "all", per_class=4)
    bad = tmp_path / "all" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (tmp_path / "all" / "dog" / "notes.txt").write_text("not an image: ignored")
    text = "name: pics\nformat: folder\ntrain: {{root: all{skip}}}\nsplit: {{test_fraction: 0.25}}\n" \
           "input_shape: [8, 7, 3]\n"
    p = write_spec(tmp_path, text.format(skip=""))
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, str(p), "cannot decode image", "broken.png", "skip_bad")
    q = write_spec(tmp_path, text.format(skip=", skip_bad: true"), name="skip.yaml")
    d = load_user_dataset(q, "train")
    assert len(d) + len(load_user_dataset(q, "test")) == 12
    assert all("broken.png" not in str(s) for s in d.sources)
    assert "skipped 1 image file(s)" in capsys.readouterr().err
    # the report repeats when the arrays come from the cache
    load_user_dataset(q, "train")
    assert "broken.png" in capsys.readouterr().err
    # a decodable image of the wrong size is always an error, naming both sizes
    png(tmp_path / "all" / "cat" / "big.png", np.zeros((9, 9, 3), np.uint8))
    with pytest.raises(DataError) as err:
        load_user_dataset(q, "train")
    _one_line(err, str(q), "big.png", "9x9", "8x7", "set resize: stretch, fit or crop")


def test_folder_with_unknown_subfolder_or_missing_root(tmp_path: Path) -> None:
    folder_set(tmp_path / "r", per_class=2)
    p = write_spec(tmp_path, "name: f\nformat: folder\ntrain: {root: r}\nsplit: {test_fraction: 0.5}\n"
                             "input_shape: [8, 7, 3]\nclasses: [cat, dog]\n")
    with pytest.raises(DataError) as err:
        load_user_dataset(p, "train")
    _one_line(err, str(p), "emu", "not among the classes")
    q = write_spec(tmp_path, "name: f\nformat: folder\ntrain: {root: nowhere}\nsplit: {test_fraction: 0.5}\n"
                             "input_shape: [8, 7, 3]\n", name="q.yaml")
    with pytest.raises(DataError) as err:
        load_user_dataset(q, "train")
    _one_line(err, str(q), "folder not found", "nowhere")


def test_loading_writes_nothing_but_the_cache(tmp_path: Path, isolated_cache: Path) -> None:
    folder_set(tmp_path / "data" / "imgs", per_class=3)
    p = write_spec(tmp_path / "data", "name: w\nformat: folder\ntrain: {root: imgs}\nsplit: {test_fraction: 0.3}\n"
                                      "input_shape: [8, 7, 3]\n")
    npy_set(tmp_path / "data2")

    def snapshot() -> dict[str, float]:
        return {str(f): f.stat().st_mtime_ns for f in tmp_path.rglob("*")}

    before = snapshot()
    for split in ("train", "test"):
        load_user_dataset(p, split)
        load_dataset(tmp_path / "data2" / "data.yaml", split)
    assert snapshot() == before
    assert {f.parent.name for f in isolated_cache.rglob("*") if f.is_file()} == {"datasets"}


def test_load_dataset_hook_and_n_classes(tmp_path: Path) -> None:
    p = npy_set(tmp_path)
    spec = load_data_spec(p)
    assert len(load_dataset(spec, "train")) == 30
    assert n_classes(spec) == 3 and spec.n_classes() == 3
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", "train")
    with pytest.raises(DataError, match="unknown dataset"):
        n_classes("imagenet")
    with pytest.raises(DataError, match="unknown split"):
        load_user_dataset(spec, "val")
