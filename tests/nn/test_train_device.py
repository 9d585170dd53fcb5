"""Training on a torch device (`imac train --device`, `imac import --device`).

No GPU is needed: torch's meta device stands in for one.  A meta tensor meeting a CPU tensor in
an operation raises, so a training step that runs on meta has no tensor left behind on the CPU
(the way such code fails on a GPU).  Where a CUDA device is present, one tiny run trains there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import small_vgg, tensors_in, write_mnist
from imac.errors import ConfigError
from imac.nn.checkpoint import load_checkpoint
from imac.nn.models import ImacNet, build_model
from imac.nn.train import to_cpu, train, training_device


def _stray_tensors(model: torch.nn.Module) -> list[str]:
    """Tensors held as plain attributes (not parameters or buffers): `.to(device)` leaves them."""
    return [f"{mn}.{k}" for mn, mod in model.named_modules() for k, v in vars(mod).items()
            if isinstance(v, torch.Tensor)
            and k not in dict(mod.named_parameters(recurse=False)) | dict(mod.named_buffers(recurse=False))]


@pytest.mark.parametrize("name", ["mlp-mnist", "lenet-mnist", "vgg"])
def test_a_training_step_runs_wholly_on_the_device(name: str) -> None:
    model: ImacNet = small_vgg([32]) if name == "vgg" else build_model(name)
    assert _stray_tensors(model) == []
    model.to("meta").train()
    assert model.device.type == "meta"
    images = np.random.default_rng(0).integers(0, 256, (4, *model.input_shape), dtype=np.uint8)
    x = model.prepare(images)  # the stored images travel to the network's device
    x = model.augment(x, cutout=4 if x.ndim == 4 else 0)  # crop, flip and cutout drawn there too
    loss, scores = model.loss(x, torch.zeros(4, dtype=torch.long, device="meta"))
    loss.backward()
    assert x.device.type == loss.device.type == scores.device.type == "meta"
    assert {p.grad.device.type for p in model.parameters() if p.grad is not None} == {"meta"}
    with torch.no_grad():
        assert all(p.device.type == "meta" for p in model.predict_variants(x).values())


def test_flip_augmentation_is_the_same_on_every_device() -> None:
    """The flip is one `where` over the batch (no boolean indexing, which the device would have to
    synchronise on): the same images flipped as before for the same draws."""
    from imac.nn.netspec import with_changes

    model = ImacNet(with_changes(small_vgg([32]).spec, {"train.augment.crop_pad": 0, "train.augment.flip": True},
                                 "test"))
    x = torch.rand(16, 3, 32, 32)
    torch.manual_seed(5)
    got = model.augment(x, cutout=0)
    torch.manual_seed(5)
    flip = torch.rand(16) < 0.5
    want = x.clone()
    want[flip] = want[flip].flip(3)
    assert 0 < int(flip.sum()) < 16
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("device, needle", [("numpy", "numpy path"), ("meta", "cannot train there"),
                                            ("cpu:3", "no index other than 0"),
                                            ("mps", "cannot train there"), ("cuda;rm -rf ~", "unknown device"),
                                            ("", "unknown device")])
def test_devices_torch_cannot_train_on_are_refused(device: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        training_device(device)


def test_default_device_is_the_cpu() -> None:
    assert training_device(None) == training_device("cpu") == torch.device("cpu")


def test_checkpoints_hold_cpu_tensors_and_name_the_device(tmp_path: Path) -> None:
    data = write_mnist(tmp_path / "data" / "mnist", n_train=120, n_test=40).parent
    out = tmp_path / "ck.pt"
    kw = {"data_dir": data, "strict_data": False, "progress": False, "out": out, "batch_size": 40}
    train("mlp-mnist", epochs=1, device="cpu", **kw)
    payload = load_checkpoint(out)
    assert payload["train_device"] == "cpu"
    tensors = list(tensors_in(payload))
    assert tensors and all(v.device.type == "cpu" for v in tensors)
    nested = {"a": [torch.ones(2, requires_grad=True), (torch.zeros(1), 3)], "b": "text"}
    flat = to_cpu(nested)
    assert isinstance(flat["a"], list) and isinstance(flat["a"][1], tuple) and flat["b"] == "text"
    assert not flat["a"][0].requires_grad and flat["a"][1][1] == 3


def test_a_gpu_index_beyond_the_devices_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert training_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"sees 1 CUDA device\(s\) here \(cuda:0 to cuda:0\)"):
        training_device("cuda:7")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cli_refuses_an_absent_gpu_before_anything_is_written(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import imac.cli

    out = tmp_path / "ck.pt"
    for argv in (["train", "mlp-mnist", "--device", "cuda", "--out", str(out)],
                 ["import", str(tmp_path / "net.py"), "--name", "x", "--data", "mnist", "--device", "cuda:0",
                  "--out", str(out)]):
        with pytest.raises(SystemExit) as exc:
            imac.cli.main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and "no CUDA device" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_the_gpu_matches_the_cpu_closely(tmp_path: Path) -> None:
    data = write_mnist(tmp_path / "data" / "mnist", n_train=200, n_test=50).parent
    kw = {"data_dir": data, "strict_data": False, "progress": False, "batch_size": 20, "epochs": 2, "seed": 1}
    cpu = train("lenet-mnist", out=tmp_path / "cpu.pt", device="cpu", **kw)
    gpu = train("lenet-mnist", out=tmp_path / "gpu.pt", device="cuda", **kw)
    assert load_checkpoint(tmp_path / "gpu.pt")["train_device"].startswith("cuda")
    assert abs(cpu.metrics["accuracy"] - gpu.metrics["accuracy"]) <= 0.1


def test_gpu_out_of_memory_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """torch's OutOfMemoryError is a RuntimeError (not a MemoryError): a user's problem, not a bug."""
    import imac.cli
    import imac.nn.train as T

    def oom(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    monkeypatch.setattr(T, "train", oom)
    with pytest.raises(SystemExit) as exc:
        imac.cli.main(["train", "mlp-mnist"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("error: out of device memory"), err
    assert "--batch-size" in err and "internal error" not in err
