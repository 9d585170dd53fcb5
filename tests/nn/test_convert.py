"""Bring your own network: import, convert to an IMAC head, fine-tune, and every command afterwards.

A user's CNN defined here (not in imac's specs) on scikit-learn's digits; declarative networks
trained from YAML; binary weights from CSV; the errors a careless user meets.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import imac.cli
from imac.errors import ConfigError


class UserDigitsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc1 = nn.Linear(128, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.body(x))))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        imac.cli.main(list(argv))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """scikit-learn's digits as a user's npy data set, and a float CNN trained on it in plain torch."""
    sk = pytest.importorskip("sklearn.datasets")
    from imac.nn.userdata import holdout_indices

    d = tmp_path_factory.mktemp("digits")
    data = sk.load_digits()
    images, labels = data.images.astype(np.float32), data.target.astype(np.int64)
    np.save(d / "x.npy", images)
    np.save(d / "y.npy", labels)
    (d / "digits.yaml").write_text("name: digits\nformat: npy\ntrain: {images: x.npy, labels: y.npy}\n"
                                   "split: {test_fraction: 0.2, seed: 0}\ninput_shape: [8, 8]\nscale: 0.0625\n")
    tr, te = holdout_indices(labels, 0.2, 0)
    x, y = torch.from_numpy(images / 16).unsqueeze(1), torch.from_numpy(labels)
    torch.manual_seed(0)
    net = UserDigitsNet()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(8):
        for i in range(0, len(tr), 64):
            b = torch.from_numpy(tr[i:i + 64])
            loss = nn.functional.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(x[te]).argmax(1) == y[te]).float().mean())
    (d / "net.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class UserDigitsNet(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())\n"
        "        self.fc1 = nn.Linear(128, 32)\n"
        "        self.fc2 = nn.Linear(32, 10)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc2(torch.relu(self.fc1(self.body(x))))\n")
    torch.save(net.state_dict(), d / "state.pt")
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 1, 8, 8)), d / "net.ts")
    (d / "float_accuracy.txt").write_text(str(acc))
    return {"dir": d, "data": d / "digits.yaml", "py": d / "net.py", "state": d / "state.pt", "ts": d / "net.ts"}


@pytest.fixture(scope="module")
def imported(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imac.nn.convert import import_network

    out = tmp_path_factory.mktemp("imported") / "digits-net.pt"
    import_network(digits["py"], name="digits-net", data=digits["data"], state_dict=digits["state"], epochs=12,
                   out=out, progress=False)
    return out


def test_import_converts_and_keeps_the_float_network(digits: dict[str, Path], imported: Path) -> None:
    from imac.hardware.network import load_model
    from imac.nn.checkpoint import load_checkpoint

    payload = load_checkpoint(imported)
    m = payload["metrics"]
    # the user's float head, frozen beside the IMAC head, is the float network itself
    assert m["accuracy_float"] == pytest.approx(float((digits["dir"] / "float_accuracy.txt").read_text()), abs=1e-6)
    assert m["accuracy"] > 0.85  # the binary IMAC head after fine-tuning (software)
    assert payload["imported"]["kind"] == "pytorch" and payload["imported"]["float_head_exact"]
    assert payload["imported"]["float_accuracy"] == pytest.approx(m["accuracy_float"], abs=1e-6)
    assert payload["network"]["trunk"] == "imported"
    model, _, _ = load_model(str(imported))
    assert model.fc_layer_sizes() == [128, 32, 10]
    # the frozen trunk is the user's: same features as their network's body
    net = UserDigitsNet()
    net.load_state_dict(torch.load(digits["state"], weights_only=True))
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(model.features(x), net.body(x), atol=1e-5, rtol=1e-5)


def test_torchscript_import_gives_the_same_head(digits: dict[str, Path], tmp_path: Path) -> None:
    from imac.nn.importers import import_network as split_network

    a = split_network(digits["py"], state_dict=digits["state"], input_shape=(1, 8, 8))
    b = split_network(digits["ts"], input_shape=(1, 8, 8))
    assert a.sizes == b.sizes == [128, 32, 10]
    for fa, fb in zip(a.head, b.head, strict=True):
        np.testing.assert_allclose(fa.weight, fb.weight, atol=1e-6)


def test_commands_take_the_imported_network(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "simulate", str(imported), "--fidelity", "circuit", "--json")
    assert code == 0, err
    sim = json.loads(out)
    assert sim["accuracy"] > 0.6 and sim["n_subarrays"] > 0
    code, out, err = _cli(capsys, "cpu-imac", str(imported), "--json")
    assert code == 0, err
    res = json.loads(out)
    # the CPU-only network is the user's float network; its trunk workload came from the traced graph
    assert res["accuracy_cpu_only"] == pytest.approx(json.loads((imported.with_suffix(".json")).read_text())
                                                     ["metrics"]["accuracy_float"], abs=1e-9)
    assert res["energy_cpu_only_j"] > res["energy_cpu_imac_j"] > 0
    code, out, err = _cli(capsys, "evaluate", str(imported), "--json")
    assert code == 0, err
    assert json.loads(out)["fc_layer_sizes"] == [128, 32, 10]
    code, out, err = _cli(capsys, "compare", str(imported), "--limit", "100", "--json")
    assert code == 0, err
    assert "imac" in json.dumps(json.loads(out)).lower()


def test_imported_workload_is_the_traced_trunk(imported: Path) -> None:
    from imac.hardware.network import load_model
    from imac.system.cpu.workload import model_workload

    model, _, _ = load_model(str(imported))
    w = model_workload(model, batch=1, fc="none")
    conv = [lw for lw in w.layers if lw.kind == "conv"]
    assert len(conv) == 1 and conv[0].macs == 8 * 8 * 8 * 9  # 8 channels x 8x8 outputs x 3x3 kernel
    full = model_workload(model, batch=1, fc="float")
    assert sum(lw.macs for lw in full.layers if lw.kind == "fc") == 128 * 32 + 32 * 10


def test_declared_network_trains_from_yaml(mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IMAC_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny-yaml-net\ndataset: mnist\ninput: {normalize: true}\n"
                    "trunk: [{conv: {out: 2, kernel: 5}}, relu, {maxpool: 4}, flatten]\n"
                    "head: {hidden: [8], threshold: batchnorm, float_head: {activation: relu}}\n"
                    "train: {epochs: 1, batch_size: 20}\n")
    code, out, err = _cli(capsys, "train", str(spec), "--data-dir", str(mnist_dir), "--limit-train", "200",
                          "--limit-test", "100")
    assert code == 0, err
    res = json.loads(out)
    assert res["model"] == "tiny-yaml-net" and Path(res["checkpoint"]).parent == tmp_path / "cache" / "checkpoints"
    from imac.nn.models import list_models

    assert "tiny-yaml-net" in [m.name for m in list_models()]
    code, out, err = _cli(capsys, "evaluate", str(spec), "--data-dir", str(mnist_dir), "--limit", "50", "--json")
    assert code == 0, err
    # the YAML edited after training: its checkpoint no longer fits it, and the command says so
    spec.write_text(spec.read_text().replace("hidden: [8]", "hidden: [12]"))
    from imac.nn import models

    models._SESSION.clear()
    code, _, err = _cli(capsys, "evaluate", str(spec), "--data-dir", str(mnist_dir), "--limit", "50")
    assert code == 2 and "another version" in err and "head" in err and "imac train" in err


@pytest.mark.parametrize("body, message", [
    ("name: x\ndataset: mnist\ntrunk: [convv]\n", "unknown layer kind 'convv'"),
    ("name: x\ndataset: mnist\ntrunk: [{conv: {out: 4, kernel: 40}}, flatten]\n", "trunk[0] (conv)"),
    ("name: x\ndataset: mnist\ntrunk: [{conv: 4}]\n", "end it with flatten"),
    ("name: X Y\ndataset: mnist\n", "name"),
    ("name: x\ndataset: imagenet\n", "dataset"),
    ("name: x\ndataset: mnist\nhead: {hidden: [8], scales: [0.1]}\n", "2 layers need 2 scales"),
    ("name: x\ndataset: mnist\nhead: {hidden: [8]}\nbogus: 1\n", "bogus"),
    ("name: x\ndataset: mnist\ninput: {binarize_at: 128}\ntrunk: [flatten]\n", "cannot have a trunk"),
])
def test_bad_network_specs(tmp_path: Path, body: str, message: str) -> None:
    from imac.nn.models import ImacNet
    from imac.nn.netspec import load_network_spec

    p = tmp_path / "net.yaml"
    p.write_text(body)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        ImacNet(load_network_spec(p))
    assert "\n" not in str(info.value)


def test_import_refusals(digits: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ends_conv = tmp_path / "convnet.py"
    ends_conv.write_text("from torch import nn\n\nclass Net(nn.Module):\n"
                         "    def __init__(self):\n"
                         "        super().__init__()\n        self.a = nn.Linear(64, 64)\n"
                         "        self.last_conv = nn.Conv2d(1, 10, 8)\n"
                         "    def forward(self, x):\n"
                         "        return self.last_conv(self.a(x.flatten(1)).view(-1, 1, 8, 8)).flatten(1)\n")
    code, _, err = _cli(capsys, "import", str(ends_conv), "--name", "bad", "--data", str(digits["data"]),
                        "--out", str(tmp_path / "bad.pt"))
    assert code == 2 and "last_conv" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.pt").exists()
    # a network with another number of classes than the data
    eleven = tmp_path / "eleven.py"
    eleven.write_text("from torch import nn\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                      "        super().__init__()\n"
                      "        self.f = nn.Flatten()\n        self.l = nn.Linear(64, 11)\n"
                      "    def forward(self, x):\n        return self.l(self.f(x))\n")
    code, _, err = _cli(capsys, "import", str(eleven), "--name", "eleven", "--data", str(digits["data"]),
                        "--out", str(tmp_path / "e.pt"))
    assert code == 2 and "11 outputs" in err
    code, _, err = _cli(capsys, "import", str(tmp_path / "missing.py"), "--name", "m", "--data", str(digits["data"]))
    assert code == 2 and "missing.py" in err
    code, _, err = _cli(capsys, "import", str(digits["py"]), "--name", "Bad Name", "--data", str(digits["data"]),
                        "--state-dict", str(digits["state"]), "--out", str(tmp_path / "n.pt"))
    assert code == 2 and "name" in err


def test_binary_csv_head_from_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The authors' 400-120-84-10 head as binary CSV matrices, on a user's 20x20 images: imported
    as given, it maps to 67 subarrays of 32x32, and simulates."""
    from imac.config import ImacSpec
    from imac.hardware.engine import build_head
    from imac.hardware.network import load_model
    from imac.nn.importers import BinaryWeights, write_binary_layers

    rng = np.random.default_rng(0)
    sizes = [400, 120, 84, 10]
    layers = [BinaryWeights(rng.choice([-1.0, 1.0], (b, a)), rng.choice([-1.0, 1.0], b), f"layer{i}")
              for i, (a, b) in enumerate(itertools.pairwise(sizes))]
    write_binary_layers(layers, tmp_path / "csv", fmt="csv")
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (200, 20, 20)).astype(np.uint8))
    np.save(tmp_path / "y.npy", np.arange(200) % 10)
    (tmp_path / "data.yaml").write_text("name: noise\nformat: npy\ntrain: {images: x.npy, labels: y.npy}\n"
                                        "split: {test_fraction: 0.25, seed: 0}\ninput_shape: [20, 20]\n")
    code, out, err = _cli(capsys, "import", str(tmp_path / "csv"), "--name", "authors-head", "--data",
                          str(tmp_path / "data.yaml"), "--binarize-at", "128", "--out", str(tmp_path / "h.pt"),
                          "--json")
    assert code == 0, err
    assert json.loads(out)["epochs"] == 0
    model, _, _ = load_model(str(tmp_path / "h.pt"))
    for lin, lay in zip(model.head.linears, layers, strict=True):  # the weights exactly as given
        np.testing.assert_array_equal(lin.binary_weight().detach().numpy(), lay.weight)
    head = build_head(model, ImacSpec(), "behavioral")
    assert head.netmap.n_subarrays == 67


def test_onnx_file_imports_through_the_cli(digits: dict[str, Path], imported: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The same user network as an ONNX file: imported by `imac import`, the same float network."""
    pytest.importorskip("onnx")
    import importlib.util

    if importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("onnx2torch not installed (the onnx extra)")
    net = UserDigitsNet()
    net.load_state_dict(torch.load(digits["state"], weights_only=True))
    net.eval()
    path = tmp_path / "net.onnx"
    try:
        torch.onnx.export(net, (torch.randn(2, 1, 8, 8),), str(path), dynamo=True,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    except Exception:  # no onnxscript: the TorchScript-based exporter
        torch.onnx.export(net, (torch.randn(2, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    capsys.readouterr()  # the exporter's own messages
    code, out, err = _cli(capsys, "import", str(path), "--name", "digits-onnx", "--data", str(digits["data"]),
                          "--epochs", "1", "--out", str(tmp_path / "o.pt"), "--json")
    assert code == 0, err
    res = json.loads(out)
    pt = json.loads(imported.with_suffix(".json").read_text())["metrics"]
    assert res["accuracy_float"] == pytest.approx(pt["accuracy_float"], abs=1e-9)


def test_finetuned_trunk_is_saved_and_reloaded(digits: dict[str, Path], tmp_path: Path) -> None:
    """--finetune-trunk trains the traced trunk with the head; the checkpoint holds the tuned
    trunk, and the float network's accuracy as imported stays on record."""
    from imac.hardware.network import load_model
    from imac.nn.checkpoint import load_checkpoint
    from imac.nn.convert import import_network

    out = tmp_path / "tuned.pt"
    res = import_network(digits["py"], name="digits-tuned", data=digits["data"], state_dict=digits["state"],
                         epochs=2, finetune_trunk=True, out=out, progress=False)
    model, _, _ = load_model(str(out))
    net = UserDigitsNet()
    net.load_state_dict(torch.load(digits["state"], weights_only=True))
    x = torch.rand(5, 1, 8, 8)
    assert (model.features(x) - net.body(x)).abs().max() > 1e-3  # the trunk moved
    rec = load_checkpoint(out)["imported"]
    assert rec["float_accuracy"] == pytest.approx(float((digits["dir"] / "float_accuracy.txt").read_text()),
                                                  abs=1e-6)
    assert res.float_accuracy_as_imported == rec["float_accuracy"]  # carried by the result: no read-back


def test_calibrate_and_export_take_the_imported_network(imported: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    ckpt = tmp_path / "net.pt"
    shutil.copy(imported, ckpt)
    shutil.copy(imported.with_suffix(".json"), ckpt.with_suffix(".json"))
    code, _, err = _cli(capsys, "calibrate", str(ckpt), "--rows", "32", "--epochs", "1", "--circuit-epochs", "0",
                        "--limit", "300")
    assert code == 0, err
    assert (tmp_path / "calibrated" / "net.imac-difference-32.pt").is_file()
    code, out, err = _cli(capsys, "simulate", str(ckpt), "--fidelity", "behavioral", "--calibrated", "--json")
    assert code == 0, err
    assert json.loads(out)["calibration"] is not None
    code, _, err = _cli(capsys, "export", str(ckpt), "--spice", str(tmp_path / "spice"))
    assert code == 0, err
    assert (tmp_path / "spice" / "network.cir").is_file()


def _import_args(digits: dict[str, Path], name: str, *extra: str) -> list[str]:
    return ["import", str(digits["py"]), "--state-dict", str(digits["state"]), "--name", name, "--data",
            str(digits["data"]), "--epochs", "2", "--limit-train", "300", "--limit-test", "100", *extra]


def test_import_calibrates_in_one_step(digits: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`imac import --calibrate`: the checkpoint, the calibrated head where `imac calibrate`
    writes it, the circuit fidelity's accuracy without and with it; a later `imac simulate
    --calibrated` (by name, as a new process would) finds that head."""
    from imac.config import ImacSpec
    from imac.hardware.network import calibration_target
    from imac.nn import models

    monkeypatch.setenv("IMAC_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = _cli(capsys, *_import_args(digits, "digits-cal", "--calibrate", "--calibrate-epochs", "1",
                                                "--circuit-epochs", "1", "--rows", "32", "--json"))
    assert code == 0, err
    res = json.loads(out)
    ckpt = tmp_path / "cache" / "checkpoints" / "digits-cal.pt"
    cal = calibration_target(ckpt, 32, ImacSpec().amplifier.topology)
    assert res["checkpoint"] == str(ckpt) and res["calibration"]["checkpoint"] == str(cal) and cal.is_file()
    assert res["calibration"]["n_test"] == 100 and res["calibration"]["train_images"] == 300
    for k in ("accuracy", "accuracy_float", "accuracy_float_as_imported", "accuracy_circuit",
              "accuracy_circuit_calibrated"):
        assert 0.0 <= res[k] <= 1.0, k
    assert res["accuracy_circuit_calibrated"] > 0.5
    models._SESSION.pop("digits-cal", None)  # found again from the cache, as in a new process
    code, out, err = _cli(capsys, "simulate", "digits-cal", "--fidelity", "circuit", "--calibrated", "--limit",
                          "100", "--json")
    assert code == 0, err
    sim = json.loads(out)
    assert sim["calibration"] is not None and sim["checkpoint"] == cal.name
    assert sim["accuracy"] == pytest.approx(res["accuracy_circuit_calibrated"], abs=1e-12)


def test_import_calibrate_refuses_a_bad_design_at_once(digits: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --config / --rows fails before the import's fine-tuning: one error line, exit 2,
    nothing written; the calibration options without --calibrate are refused, not ignored."""
    import time

    bad = tmp_path / "bad.yaml"
    bad.write_text("neuron: {r_in_ohm: -1}\n")
    for design_args, message in ((["--config", str(bad)], "r_in_ohm"), (["--config", "no-such-preset"], "preset"),
                                 (["--calibrate-epochs", "0"], "calibrate-epochs")):
        t0 = time.perf_counter()
        code, out, err = _cli(capsys, *_import_args(digits, "digits-bad", "--calibrate", *design_args, "--out",
                                                    str(tmp_path / "n.pt")))
        assert time.perf_counter() - t0 < 3.0
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and err.startswith("error:")
        assert out == "" and list(tmp_path.iterdir()) == [bad]
    code, _, err = _cli(capsys, *_import_args(digits, "digits-bad", "--rows", "16", "--out", str(tmp_path / "n.pt")))
    assert code == 2 and "--rows: applies with --calibrate only" in err and list(tmp_path.iterdir()) == [bad]
    # a user's own file where the calibrated head would go: refused before the import, left as it was
    notes = tmp_path / "calibrated" / "n.imac-difference-32.pt"
    notes.parent.mkdir()
    notes.write_bytes(b"my notes")
    t0 = time.perf_counter()
    code, out, err = _cli(capsys, *_import_args(digits, "digits-bad", "--calibrate", "--rows", "32", "--out",
                                                str(tmp_path / "n.pt")))
    assert time.perf_counter() - t0 < 3.0
    assert code == 2 and "not an imac checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert notes.read_bytes() == b"my notes" and not (tmp_path / "n.pt").exists()


def test_import_keeps_its_checkpoint_when_calibration_fails(digits: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import imac.hardware.network
    from imac.errors import DataError
    from imac.nn.checkpoint import load_checkpoint

    def fail(*args: object, **kwargs: object) -> None:
        raise DataError("disk said no")

    monkeypatch.setattr(imac.hardware.network, "calibrate", fail)
    ckpt = tmp_path / "kept.pt"
    code, out, err = _cli(capsys, *_import_args(digits, "digits-kept", "--epochs", "1", "--calibrate", "--rows", "32",
                                                "--out", str(ckpt)))
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # after the import's progress bars
    assert code == 2 and out == "" and len(errors) == 1, err
    assert f"{ckpt} is a valid checkpoint" in errors[0] and "disk said no" in errors[0]
    assert f"retry with `imac calibrate {ckpt} --rows 32 --epochs 3 --circuit-epochs 1 --limit 300`" in errors[0]
    assert load_checkpoint(ckpt)["model"] == "digits-kept" and not (tmp_path / "calibrated").exists()


def test_imported_network_moves_whole_to_a_device(imported: Path) -> None:
    """`imac import --device cuda` fine-tunes there: every tensor of an imported network (the traced
    trunk's parameters, buffers and constants, the float and IMAC heads) follows `model.to(device)`.
    Checked without a GPU on torch's meta device, where any tensor left behind on the CPU raises."""
    from imac.nn.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(imported), imported)
    stray = [f"{mn}.{k}" for mn, mod in model.named_modules() for k, v in vars(mod).items()
             if isinstance(v, torch.Tensor)
             and k not in dict(mod.named_parameters(recurse=False)) | dict(mod.named_buffers(recurse=False))]
    assert stray == []
    model.to("meta").train()
    x = model.augment(model.prepare(np.zeros((3, 8, 8), dtype=np.float32)))
    loss, scores = model.loss(x, torch.zeros(3, dtype=torch.long, device="meta"))
    loss.backward()
    assert x.device.type == loss.device.type == scores.device.type == "meta"
    assert {p.grad.device.type for p in model.parameters() if p.grad is not None} == {"meta"}
    assert all(p.device.type == "meta" for p in model.parameters())


DEVICE_BOUND_NET = """import torch
from torch import nn


class BoundNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(256, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        y = self.c(x.float()) + torch.ones(1, 4, 1, 1)  # traced with device=cpu written into the graph
        return self.fc2(torch.relu(self.fc1(torch.relu(y).flatten(1))))
"""


def test_an_imported_trunk_with_the_cpu_in_its_graph_is_retargeted(digits: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """`x.float()` and tensors made in `forward` put the export device into the traced graph
    (a dtype/device check, a `device=cpu` argument), which `.to(device)` does not rewrite: on a GPU
    the first step would fail.  `ImacNet.to_device` re-targets the program too, keeping the trunk's
    weights and frozen state, and back on the CPU the network computes what it did."""
    import importlib.util

    from imac.nn.checkpoint import load_checkpoint, model_from_checkpoint
    from imac.nn.convert import import_network

    (tmp_path / "bound.py").write_text(DEVICE_BOUND_NET)
    spec = importlib.util.spec_from_file_location("bound_net", tmp_path / "bound.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    torch.manual_seed(0)
    torch.save(mod.BoundNet().state_dict(), tmp_path / "bound.pt")
    out = tmp_path / "bound-net.pt"
    import_network(tmp_path / "bound.py", name="bound-net", data=digits["data"], state_dict=tmp_path / "bound.pt",
                   epochs=1, limit_train=64, limit_test=32, out=out, progress=False)
    model = model_from_checkpoint(load_checkpoint(out), out)
    x = model.prepare(np.random.default_rng(0).random((3, 8, 8)).astype(np.float32))
    with torch.no_grad():
        before = model.features(x)

    def bound_to(m: torch.nn.Module) -> set[str]:
        graph = m.trunk.inner.graph  # type: ignore[union-attr]
        return {str(n.kwargs["device"]) for n in graph.nodes if n.kwargs.get("device") is not None}

    assert bound_to(model) == {"cpu"}
    with pytest.raises(RuntimeError):  # what .to() alone leaves: the graph still makes CPU tensors
        model.to("meta").loss(model.prepare(np.zeros((2, 8, 8), np.float32)), torch.zeros(2, dtype=torch.long,
                                                                                        device="meta"))
    model = model_from_checkpoint(load_checkpoint(out), out)
    model.freeze_()
    model.to_device("meta").train()
    assert bound_to(model) == {"meta"}
    assert not any(p.requires_grad for p in model.trunk.parameters())  # frozen stays frozen
    loss, _ = model.loss(model.prepare(np.zeros((2, 8, 8), np.float32)), torch.zeros(2, dtype=torch.long,
                                                                                     device="meta"))
    loss.backward()
    assert loss.device.type == "meta"
    assert bound_to(model_from_checkpoint(load_checkpoint(out), out)) == {"cpu"}  # the program itself kept
    # the rebuilt trunk carries the current (here: changed, as by --finetune-trunk) weights, not the
    # program's own (meta tensors hold no data: this part runs CPU to CPU)
    from imac.nn.models import retarget_trunk

    model = model_from_checkpoint(load_checkpoint(out), out)
    with torch.no_grad():
        model.trunk.inner.c.bias.add_(0.25)  # type: ignore[union-attr, operator]
        changed = model.features(x)
    model.trunk.requires_grad_(False)
    model.trunk = retarget_trunk(model.trunk, model.trunk_program, torch.device("cpu"))  # type: ignore[arg-type]
    assert not any(p.requires_grad for p in model.trunk.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), changed, rtol=0, atol=0)
    assert not torch.equal(changed, before)
