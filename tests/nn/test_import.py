"""Importing a user's network (nn.Module file + state_dict, TorchScript, torch.export, ONNX) and
binary weights; the split into CPU trunk and FC head; the trunk's CPU work."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from imac.errors import ConfigError, DataError, ImacError, ShapeError
from imac.nn.importers import (
    BinaryWeights,
    SplitNetwork,
    deserialize_trunk,
    import_exported,
    import_network,
    import_onnx,
    import_pytorch,
    import_torchscript,
    read_binary_layers,
    serialize_trunk,
    trunk_workload,
    write_binary_layers,
)

# A user's small CNN for 1x8x8 inputs, as the user would write it in their own file.
USER_CNN = '''
import torch
from torch import nn


class UserCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
        )
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.flatten(self.features(x), 1)
        return self.fc2(torch.relu(self.fc1(x)))
'''
SHAPE = (1, 8, 8)


def _user_model(folder: Path) -> tuple[nn.Module, Path]:
    src = folder / "user_cnn.py"
    src.write_text(USER_CNN)
    namespace: dict = {}
    exec(compile(USER_CNN, str(src), "exec"), namespace)
    torch.manual_seed(1234)
    return namespace["UserCNN"]().eval(), src


def _onnx_ready() -> None:
    """Skip without the onnx extra (the library itself copes with a torchvision that cannot load
    beside a CPU-only torch: see imac.nn.importers.onnx_route._modules)."""
    pytest.importorskip("onnx")
    from imac.nn.importers.onnx_route import _modules

    try:
        _modules()
    except ConfigError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("user")
    model, src = _user_model(folder)
    sd = folder / "user_cnn_state.pt"
    torch.save(model.state_dict(), sd)
    x = torch.randn(2, *SHAPE)
    ts = folder / "user_cnn.ts"
    torch.jit.save(torch.jit.script(model), str(ts))
    pt2 = folder / "user_cnn.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(pt2))
    return {"model": model, "py": src, "state_dict": sd, "ts": ts, "pt2": pt2, "folder": folder}


@pytest.fixture(scope="module")
def routes(user: dict) -> dict[str, SplitNetwork]:
    fresh = import_pytorch(user["py"], state_dict=user["state_dict"], input_shape=SHAPE)
    return {
        "pytorch": fresh,
        "module": import_pytorch(user["model"], input_shape=SHAPE),
        "torchscript": import_torchscript(user["ts"], input_shape=SHAPE),
        "torch.export": import_exported(user["pt2"]),
    }


@pytest.fixture(scope="module")
def onnx_split(user: dict) -> SplitNetwork:
    _onnx_ready()
    path = user["folder"] / "user_cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pytest.importorskip("onnxscript")
            torch.onnx.export(user["model"], (torch.randn(2, *SHAPE),), str(path), dynamo=True,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        except Exception:  # no onnxscript or the new exporter failed: the TorchScript-based one
            torch.onnx.export(user["model"], (torch.randn(2, *SHAPE),), str(path), dynamo=False,
                              input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return import_onnx(path)


def _per_kind(split: SplitNetwork, batch: int = 3) -> dict[str, tuple[int, int, int, int]]:
    out: dict[str, tuple[int, int, int, int]] = {}
    for lw in trunk_workload(split, batch, "trunk"):
        m, o, w, b = out.get(lw.kind, (0, 0, 0, 0))
        out[lw.kind] = (m + lw.macs, o + lw.ops, w + lw.weights, b + lw.biases)
    return out


def _check_route(split: SplitNetwork, user: dict, reference: SplitNetwork) -> None:
    model = user["model"]
    assert split.input_shape == SHAPE
    assert [fc.activation for fc in split.head] == ["relu", None]
    assert split.sizes == [128, 32, 10]
    for fc, ref in zip(split.head, reference.head, strict=True):
        np.testing.assert_allclose(fc.weight, ref.weight, atol=1e-6)
        np.testing.assert_allclose(fc.bias, ref.bias, atol=1e-6)
        assert fc.weight.dtype == np.float64
    np.testing.assert_allclose(split.head[0].weight, model.fc1.weight.detach().double().numpy(), atol=1e-6)
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(split.float_forward(x), want, atol=1e-5, rtol=0)
    assert tuple(split.trunk_module()(x).shape) == (5, 128)
    assert _per_kind(split) == _per_kind(reference)


@pytest.mark.parametrize("route", ["pytorch", "module", "torchscript", "torch.export"])
def test_every_route_gives_the_same_head_trunk_and_logits(routes: dict, user: dict, route: str) -> None:
    _check_route(routes[route], user, routes["module"])
    assert routes[route].source == ("pytorch" if route == "module" else route)


def test_onnx_route_gives_the_same_split(onnx_split: SplitNetwork, routes: dict, user: dict) -> None:
    _check_route(onnx_split, user, routes["module"])
    assert onnx_split.source == "onnx"


def test_trunk_workload_matches_the_module_walk(routes: dict, user: dict) -> None:
    """The graph counter and workload.py's leaf-module walk agree layer by layer."""
    from imac.system.cpu.workload import _walk

    walked, _ = _walk(user["model"].features, torch.zeros(4, *SHAPE), "trunk.features")
    counted = trunk_workload(routes["module"], 4, "trunk")
    key = [(lw.kind, lw.macs, lw.ops, lw.weights, lw.biases, lw.in_shape, lw.out_shape) for lw in walked]
    assert [(lw.kind, lw.macs, lw.ops, lw.weights, lw.biases, lw.in_shape, lw.out_shape) for lw in counted] == key
    assert [lw.name for lw in counted] == [lw.name for lw in walked]  # the user's module paths
    assert sum(lw.macs for lw in trunk_workload(routes["module"], 1)) * 4 == sum(lw.macs for lw in counted)


def test_trunk_serializes_and_keeps_its_work(routes: dict) -> None:
    split = routes["pytorch"]
    data = serialize_trunk(split.trunk)
    again = deserialize_trunk(data)
    x = torch.randn(3, *SHAPE)
    torch.testing.assert_close(again.module()(x), split.trunk_module()(x))
    assert trunk_workload(again, 2) == trunk_workload(split, 2)
    with pytest.raises(DataError):
        deserialize_trunk(b"not a program")


class Branchy(nn.Module):
    """Two branches concatenated, a residual add, then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(1, 3, 3, padding=1)
        self.right = nn.Conv2d(1, 3, 1)
        self.mix = nn.Conv2d(6, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(24, 16)
        self.fc2 = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([torch.relu(self.left(x)), torch.tanh(self.right(x))], dim=1)
        h = torch.relu(self.bn(self.mix(h)) + h)
        h = self.pool(h).flatten(1)
        return torch.log_softmax(self.out(torch.sigmoid(self.fc2(torch.relu(self.fc1(h))))), dim=1)


class SkipIntoHead(nn.Module):
    """A skip connection into the FC chain: only the Linear layers after it form the head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc1 = nn.Linear(72, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 8)
        self.fc4 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1)))
        b = torch.relu(self.fc2(a) + a)
        return self.fc4(torch.relu(self.fc3(b)))


def test_non_sequential_trunk_splits_at_the_fc_chain() -> None:
    torch.manual_seed(0)
    model = Branchy().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    split = import_pytorch(model, input_shape=SHAPE)
    assert [fc.name for fc in split.head] == ["fc1", "fc2", "out"]
    assert [fc.activation for fc in split.head] == ["relu", "sigmoid", None]
    assert any("log_softmax" in n for n in split.notes)
    x = torch.randn(6, *SHAPE)
    assert tuple(split.trunk_module()(x).shape) == (6, 24)
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(torch.log_softmax(split.float_forward(x), dim=1), want, atol=1e-6, rtol=0)
    kinds = {lw.kind for lw in trunk_workload(split, 2)}
    assert kinds == {"conv", "act", "bn", "pool"}
    assert any("concatenation" in op for op in split.trunk_ops)


def test_skip_connection_into_the_head_ends_the_chain() -> None:
    torch.manual_seed(0)
    model = SkipIntoHead().eval()
    split = import_pytorch(model, input_shape=SHAPE)
    assert [fc.name for fc in split.head] == ["fc3", "fc4"]
    assert split.sizes == [16, 8, 3]
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(split.float_forward(x), model(x), atol=1e-6, rtol=0)
    fc_rows = [lw for lw in trunk_workload(split, 1) if lw.kind == "fc"]
    assert [lw.name for lw in fc_rows] == ["trunk.fc1", "trunk.fc2"]  # the rest of the chain runs on the CPU


def test_pure_mlp_has_no_trunk() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.Hardtanh(), nn.Linear(20, 10)).eval()
    split = import_pytorch(model, input_shape=SHAPE)
    assert split.trunk is None and split.trunk_module() is None and split.trunk_ops == []
    assert split.sizes == [64, 20, 10] and split.head[0].activation == "hardtanh"
    assert trunk_workload(split, 4) == []
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(split.float_forward(x), model(x))


class EndsWithConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 16)
        self.conv3 = nn.Conv1d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.fc(x.flatten(1)).unsqueeze(1)).flatten(1)


class PoolAfterLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.gap = nn.AdaptiveAvgPool1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gap(self.fc(x)).flatten(1)


def test_networks_not_ending_in_fc_are_refused_naming_the_layer() -> None:
    with pytest.raises(ConfigError, match=r"ends with conv3 \(convolution\), not a fully-connected layer"):
        import_pytorch(EndsWithConv(), input_shape=SHAPE)
    with pytest.raises(ConfigError, match=r"ends with gap \(adaptive average pooling\)"):
        import_pytorch(PoolAfterLinear(), input_shape=(8, 8))
    with pytest.raises(ConfigError, match=r"no fully-connected layer \(it ends with 0 \(convolution\) followed by"):
        import_pytorch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), input_shape=SHAPE)


def _one_line_error(fn, path: Path, kind: type[Exception] = ImacError) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(kind) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_files_that_are_not_models_are_refused(tmp_path: Path, user: dict) -> None:
    junk = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    for suffix in (".pt", ".pt2", ".onnx", ".py"):
        p = tmp_path / f"junk{suffix}"
        p.write_bytes(junk)
        _one_line_error(lambda p=p: import_network(p, input_shape=SHAPE), p)
    bad = tmp_path / "syntax.py"
    bad.write_text("class Net(nn.Module:\n    pass\n")
    assert "syntax error at line 1" in _one_line_error(lambda: import_pytorch(bad, input_shape=SHAPE), bad,
                                                       ConfigError)
    empty = tmp_path / "helpers.py"
    empty.write_text("import math\n\ndef area(r):\n    return math.pi * r * r\n")
    assert "no nn.Module" in _one_line_error(lambda: import_pytorch(empty, input_shape=SHAPE), empty, ConfigError)
    wrong = tmp_path / "other_state.pt"
    torch.save(nn.Linear(3, 3).state_dict(), wrong)
    msg = _one_line_error(lambda: import_pytorch(user["py"], state_dict=wrong, input_shape=SHAPE), wrong, DataError)
    assert "does not fit UserCNN" in msg and "missing" in msg
    junk_sd = tmp_path / "junk_state.pt"
    junk_sd.write_bytes(junk)
    _one_line_error(lambda: import_pytorch(user["py"], state_dict=junk_sd, input_shape=SHAPE), junk_sd, DataError)
    msg = _one_line_error(lambda: import_network(user["state_dict"], input_shape=SHAPE), user["state_dict"],
                          DataError)
    assert "a state_dict, not a whole network" in msg
    with pytest.raises(ConfigError, match="input_shape"):
        import_network(user["py"])
    with pytest.raises(ConfigError, match="does not run on inputs of shape"):
        import_pytorch(user["py"], input_shape=(3, 5, 5))


def test_import_network_dispatches_on_the_suffix(user: dict, routes: dict) -> None:
    split = import_network(user["pt2"])
    assert split.source == "torch.export" and split.sizes == routes["module"].sizes
    assert import_network(user["ts"], input_shape=SHAPE).source == "torchscript"
    assert import_network(user["py"], state_dict=user["state_dict"], input_shape=SHAPE).source == "pytorch"


# --------------------------------------------------------------------------------- binary weights


def _random_layers(sizes: list[int], seed: int = 0, bias: bool = True) -> list[BinaryWeights]:
    rng = np.random.default_rng(seed)
    return [BinaryWeights(rng.choice([-1.0, 1.0], size=(b, a)), rng.choice([-1.0, 1.0], size=b) if bias else None,
                          f"fc{i}") for i, (a, b) in enumerate(itertools.pairwise(sizes))]


@pytest.mark.parametrize("fmt", ["npz", "csv"])
def test_binary_weights_round_trip(tmp_path: Path, fmt: str) -> None:
    layers = _random_layers([20, 12, 7, 5])
    layers[1].bias = None
    path = write_binary_layers(layers, tmp_path / ("w.npz" if fmt == "npz" else "w"), fmt=fmt)  # type: ignore[arg-type]
    back = read_binary_layers(path)
    assert len(back) == 3
    for a, b in zip(layers, back, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert (a.bias is None) == (b.bias is None)
        if a.bias is not None:
            np.testing.assert_array_equal(a.bias, b.bias)


def test_npz_accepts_weight_bias_keys_in_either_layout(tmp_path: Path) -> None:
    layers = _random_layers([9, 6, 4])
    p = tmp_path / "alt.npz"
    np.savez(p, weight_0=layers[0].weight.T, bias_0=layers[0].bias, weight_1=layers[1].weight.T,
             bias_1=layers[1].bias)
    back = read_binary_layers(p)
    np.testing.assert_array_equal(back[0].weight, layers[0].weight)
    np.testing.assert_array_equal(back[1].weight, layers[1].weight)


def test_published_head_from_csv_maps_to_67_subarrays(tmp_path: Path) -> None:
    """The authors' 400-120-84-10 head, stored (in x out) one CSV per layer, 1-based, on 32x32."""
    from imac.config import ImacSpec
    from imac.hardware.mapping import BinaryLayer, map_network

    layers = _random_layers([400, 120, 84, 10], seed=3)
    folder = tmp_path / "imac_sim"
    folder.mkdir()
    for i, lay in enumerate(layers, 1):
        np.savetxt(folder / f"W{i}.csv", lay.weight.T, fmt="%d", delimiter=",")
        np.savetxt(folder / f"B{i}.csv", lay.bias[:, None], fmt="%d", delimiter=",")  # type: ignore[index]
    back = read_binary_layers(folder)
    assert [(b.fan_in, b.fan_out) for b in back] == [(400, 120), (120, 84), (84, 10)]
    for a, b in zip(layers, back, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)  # type: ignore[arg-type]
    netmap = map_network([BinaryLayer(b.weight, b.bias, volts_per_unit_sum=0.1) for b in back], ImacSpec(),
                         32, 32, True)
    assert netmap.n_subarrays == 67


def test_bad_binary_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    layers = _random_layers([6, 4, 3])
    folder = write_binary_layers(layers, tmp_path / "ok", fmt="csv")
    w1 = folder / "W1.csv"
    good = w1.read_text()
    w1.write_text(good.replace("-1", "0", 1) if good.startswith("-1") else "0" + good[1:])
    msg = _one_line_error(lambda: read_binary_layers(folder), w1, DataError)
    assert "value 0 at row 1, column 1" in msg and "-1 or +1" in msg
    w1.write_text(good.replace("1", "nan", 1))
    assert "nan" in _one_line_error(lambda: read_binary_layers(folder), w1, DataError)
    w1.write_text(good.replace(",", ",x", 1))
    assert "not a number" in _one_line_error(lambda: read_binary_layers(folder), w1, DataError)
    w1.write_text("\n".join(",".join(["1"] * 5) for _ in range(3)))  # 3x5: chains neither way with 4x6
    _one_line_error(lambda: read_binary_layers(folder), folder, ShapeError)
    w1.write_text(good)
    (folder / "b0.csv").write_text("1,-1,1\n")  # 3 biases for 4 outputs
    _one_line_error(lambda: read_binary_layers(folder), folder, ShapeError)
    npz = tmp_path / "bad.npz"
    np.savez(npz, W0=np.ones((3, 4)), gamma=np.ones(3))
    assert "unknown key 'gamma'" in _one_line_error(lambda: read_binary_layers(npz), npz, DataError)
    np.savez(npz, W0=np.array([[1.0, -1.0], [0.5, 1.0]]))
    assert "value 0.5 at row 2, column 1" in _one_line_error(lambda: read_binary_layers(npz), npz, DataError)
    with pytest.raises(DataError, match="no such file"):
        read_binary_layers(tmp_path / "missing.npz")
    with pytest.raises(ShapeError):
        write_binary_layers([layers[1], layers[0]], tmp_path / "x.npz")


class Functional(nn.Module):
    """FC layers written as matrix products: ``h @ W + b`` and ``addmm``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.w1 = nn.Parameter(torch.randn(72, 16))
        self.b1 = nn.Parameter(torch.randn(16))
        self.w2 = nn.Parameter(torch.randn(5, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(torch.relu(self.conv(x)), 1)
        h = torch.nn.functional.leaky_relu(h @ self.w1 + self.b1, 0.2)
        return torch.addmm(torch.zeros(5), h, self.w2.t())


def test_matrix_product_heads_and_fixed_batch_programs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Functional().eval()
    split = import_pytorch(model, input_shape=SHAPE)
    assert split.sizes == [72, 16, 5] and [fc.activation for fc in split.head] == ["leaky_relu", None]
    np.testing.assert_allclose(split.head[0].weight, model.w1.detach().double().numpy().T, atol=1e-7)
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(split.float_forward(x), model(x))

    class FixedBatch(nn.Module):  # its code pins the batch size to 3
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(72, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).view(3, -1))

    fixed = FixedBatch().eval()
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(fixed, (torch.randn(3, *SHAPE),)), str(path))
    split = import_exported(path)
    x = torch.randn(6, *SHAPE)
    with torch.no_grad():
        want = torch.cat([fixed(x[:3]), fixed(x[3:])])
    torch.testing.assert_close(split.float_forward(x), want)  # run 3 by 3
    assert sum(lw.macs for lw in trunk_workload(split, 6)) == 2 * sum(lw.macs for lw in trunk_workload(split, 3))
