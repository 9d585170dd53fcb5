"""Tiny training runs, resume, checkpoint errors (synthetic data, seconds each)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import torch

from conftest import small_vgg, tensors_in, write_cifar_tar, write_mnist
from imac.errors import DataError, OutputExistsError
from imac.nn.checkpoint import find_checkpoint, load_checkpoint, metrics_path
from imac.nn.data import CIFAR10_JPEG_TAR
from imac.nn.train import evaluate, train


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "data" / "mnist", n_train=200, n_test=50).parent


def test_train_resume_evaluate(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "ck" / "mlp.pt"
    kw = {"data_dir": tiny_mnist, "strict_data": False, "progress": False, "out": out,
          "batch_size": 20, "lr": 3e-3}
    r1 = train("mlp-mnist", epochs=1, seed=3, **kw)
    p1 = load_checkpoint(out, "mlp-mnist")
    assert p1["epoch"] == 1 and p1["seed"] == 3 and p1["optimizer"] is None
    assert set(p1["data_sha256"]) == {"train", "test"} and p1["torch_version"]
    assert 0 <= r1.metrics["accuracy"] <= 1 and r1.metrics["n_test"] == 50
    assert metrics_path(out).is_file()
    # the binary layers' shadow weights stay clipped
    assert max(float(v.abs().max()) for k, v in p1["state_dict"].items()
               if k.startswith("head.linears")) <= 1.0
    with pytest.raises(OutputExistsError):
        train("mlp-mnist", epochs=1, **kw)
    r2 = train("mlp-mnist", epochs=8, resume=True, **kw)
    p2 = load_checkpoint(out)
    assert p2["epoch"] == 8 and len(p2["metrics"]["history"]) == 8 and p2["seed"] == 3
    assert r2.metrics["accuracy"] >= 0.6  # learns: chance is 0.1
    ev = evaluate("mlp-mnist", out, data_dir=tiny_mnist, strict_data=False, progress=False)
    assert ev["accuracy"] == pytest.approx(r2.metrics["accuracy"])
    assert ev["data_sha256_matches"] is True and ev["fc_layer_sizes"] == [784, 16, 10]


def test_resume_is_deterministic(tiny_mnist: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import imac.nn.train as T

    kw = {"data_dir": tiny_mnist, "strict_data": False, "progress": False, "seed": 1,
          "limit_train": 100, "epochs": 2, "device": "cpu"}
    train("lenet-mnist", out=tmp_path / "a.pt", **kw)
    # the same run interrupted right after its first checkpoint, then resumed
    real_save = T.save_checkpoint

    def save_then_die(path: Path, payload: dict) -> None:
        real_save(path, payload)
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train("lenet-mnist", out=tmp_path / "b.pt", **kw)
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    part = load_checkpoint(tmp_path / "b.pt")
    assert part["optimizer"] is not None and part["train_device"] == "cpu"
    # what any device leaves (the optimizer state and best weights included): CPU tensors, and the
    # state_dict's module versions (torch's load-time upgrades read them)
    assert all(v.device.type == "cpu" for v in tensors_in(part))
    assert getattr(part["state_dict"], "_metadata", None)
    train("lenet-mnist", out=tmp_path / "b.pt", resume=True, **kw)
    a = load_checkpoint(tmp_path / "a.pt")
    b = load_checkpoint(tmp_path / "b.pt")
    assert b["epoch"] == 2
    for k, v in a["state_dict"].items():
        if isinstance(v, torch.Tensor):
            torch.testing.assert_close(v, b["state_dict"][k])


def test_lenet_metrics_variants(tiny_mnist: Path, tmp_path: Path) -> None:
    r = train("lenet-mnist", epochs=1, out=tmp_path / "l.pt", data_dir=tiny_mnist,
              strict_data=False, progress=False, limit_train=60)
    assert {"accuracy", "accuracy_float", "accuracy_int8"} <= set(r.metrics)
    p = load_checkpoint(tmp_path / "l.pt")
    assert p["int8_calibration"] and all(s > 0 for s, _ in p["int8_calibration"])


def test_vgg_tiny_run(tmp_path: Path) -> None:
    write_cifar_tar(tmp_path / "data" / "cifar10" / CIFAR10_JPEG_TAR, per_class=(4, 1))
    r = train("vgg11-cifar10", epochs=1, out=tmp_path / "v.pt", data_dir=tmp_path / "data",
              strict_data=False, progress=False, limit_train=32)
    assert r.metrics["n_test"] == 10 and "accuracy_int8" in r.metrics


def test_checkpoint_errors(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "mlp.pt"
    train("mlp-mnist", epochs=1, out=out, data_dir=tiny_mnist, strict_data=False,
          progress=False, limit_train=50)
    before = out.read_bytes()
    with pytest.raises(DataError, match=r"mlp-mnist.*not 'lenet-mnist'"):
        evaluate("lenet-mnist", out, data_dir=tiny_mnist, strict_data=False)
    with pytest.raises(DataError, match="not 'lenet-mnist'"):
        train("lenet-mnist", epochs=2, out=out, resume=True, data_dir=tiny_mnist,
              strict_data=False)
    assert out.read_bytes() == before  # nothing overwritten on failure
    bad = tmp_path / "bad.pt"
    bad.write_bytes(before[: len(before) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_checkpoint(bad)
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad\.pt"):
        evaluate("mlp-mnist", bad, data_dir=tiny_mnist, strict_data=False)
    torch.save({"hello": 1}, bad)
    with pytest.raises(DataError, match="not an imac checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(DataError, match="not found"):
        find_checkpoint("mlp-mnist", tmp_path / "nope.pt")


def test_lr_schedules() -> None:
    from imac.errors import ConfigError
    from imac.nn.train import _lr_at

    assert _lr_at(0, 10, 1.0) == pytest.approx(1.0)
    assert _lr_at(0.5, 10, 1.0) == _lr_at(0, 10, 1.0)  # cosine: per epoch
    assert _lr_at(10, 10, 1.0) == pytest.approx(0.05)
    oc = [_lr_at(e / 10, 10, 1.0, "onecycle", 0.2) for e in range(101)]
    assert oc[0] == pytest.approx(1 / 25) and max(oc) == pytest.approx(1.0)
    assert oc.index(max(oc)) == 20 and oc[-1] == pytest.approx(1e-4)
    assert all(a <= b for a, b in pairwise(oc[:21]))
    assert all(a >= b for a, b in pairwise(oc[20:]))
    with pytest.raises(ConfigError, match="schedule"):
        _lr_at(0, 10, 1.0, "step")


def test_param_groups_decay_float_weights_only() -> None:
    from imac.nn.models import build_model
    from imac.nn.train import param_groups

    m = small_vgg([16, 16])
    rest, decay = param_groups(m, 0.05)
    assert decay["weight_decay"] == 0.05 and rest["weight_decay"] == 0.0
    ids = {id(p) for p in decay["params"]}
    assert all(id(p) not in ids for p in m.head.parameters())  # binary shadow weights
    assert all(p.ndim > 1 for p in decay["params"])
    assert len(ids) + len(rest["params"]) == len(list(m.parameters()))
    assert len(param_groups(build_model("mlp-mnist"), 0.1)) == 1  # nothing float to decay


def test_overwrite_only_replaces_imac_checkpoints(tiny_mnist: Path, tmp_path: Path) -> None:
    """--out pointing at a user's file: refused with or without --overwrite, file intact;
    a JSON beside it that the metrics would replace is refused too."""
    from imac.nn.checkpoint import check_checkpoint_target

    kw = {"data_dir": tiny_mnist, "strict_data": False, "progress": False, "epochs": 1, "limit_train": 40}
    mine = tmp_path / "thesis.pt"
    mine.write_text("not a checkpoint")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError):
            train("mlp-mnist", out=mine, overwrite=overwrite, **kw)
    assert mine.read_text() == "not a checkpoint"
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(OutputExistsError, match=r"notes\.json"):
        train("mlp-mnist", out=tmp_path / "notes.pt", **kw)
    assert (tmp_path / "notes.json").read_text() == "{}" and not (tmp_path / "notes.pt").exists()
    with pytest.raises(OutputExistsError, match="folder"):
        check_checkpoint_target(tmp_path)
    with pytest.raises(OutputExistsError, match="is a file"):
        check_checkpoint_target(mine / "x.pt")
    ok = tmp_path / "ok.pt"
    train("mlp-mnist", out=ok, **kw)
    train("mlp-mnist", out=ok, overwrite=True, **kw)  # an imac checkpoint may be replaced
    assert check_checkpoint_target(ok, overwrite=True) == ok
