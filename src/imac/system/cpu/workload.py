"""What a network asks of the CPU: per layer, MACs, element-wise operations, weights and activations."""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from imac.config.system import BYTES_PER_ELEMENT
from imac.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily inside the functions that need it
    from torch import nn

from imac.system.cpu.cores import BIAS_BYTES

# Element-wise operations per output element of each non-MAC layer kind (our counts, stated so
# they can be changed): tanh as a vectorized rational approximation (~7th/6th-order polynomials,
# a division, clamps), pooling as k*k-1 adds or compares (+1 scale for average pooling).
TANH_OPS = 20
SIGMOID_OPS = 20
REQUANT_OPS = 3  # int8: scale the int32 accumulator, round, clamp (per output element)



@dataclass(frozen=True)
class LayerWork:
    """One layer's work for a whole batch (counts, not bytes: bytes depend on the precision)."""

    name: str
    kind: str  # conv, fc, pool, act, bn
    macs: int
    ops: int  # element-wise ops other than MACs (bias, activation, pooling, BN)
    weights: int  # weight elements (stored at the layer precision)
    biases: int  # bias elements (fp32 / int32)
    in_elems: int
    out_elems: int
    out_channels: int  # the SIMD-vectorized dimension of MAC layers (0 for others)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def weight_bytes(self, precision: str) -> int:
        return self.weights * BYTES_PER_ELEMENT[precision] + self.biases * BIAS_BYTES[precision]

    def activation_bytes(self, precision: str) -> int:
        return (self.in_elems + self.out_elems) * BYTES_PER_ELEMENT[precision]

    def bytes(self, precision: str) -> int:
        return self.weight_bytes(precision) + self.activation_bytes(precision)


@dataclass(frozen=True)
class Workload:
    model: str
    batch: int
    layers: tuple[LayerWork, ...]

    @property
    def macs(self) -> int:
        return sum(lw.macs for lw in self.layers)


NO_COST_LAYERS = ("Flatten", "Dropout", "Identity", "Unflatten")  # views or no-ops at inference: no cost
_ACT_OPS = {"ReLU": 1, "ReLU6": 2, "LeakyReLU": 2, "Hardtanh": 2, "Tanh": TANH_OPS, "Sigmoid": SIGMOID_OPS,
            "GELU": TANH_OPS, "SiLU": SIGMOID_OPS + 1}


def leaf_modules(seq: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    kids = list(seq.named_children())
    if not kids:
        return [(prefix, seq)]
    out = []
    for n, m in kids:
        out += leaf_modules(m, f"{prefix}.{n}")
    return out


def _layer_work(name: str, m: Any, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> LayerWork | None:
    t = type(m).__name__
    n_in, n_out = math.prod(x_shape), math.prod(y_shape)
    common: dict[str, Any] = {"name": name, "in_elems": n_in, "out_elems": n_out, "in_shape": x_shape,
                              "out_shape": y_shape}
    if t in NO_COST_LAYERS:
        return None
    if t == "Conv2d":
        k = math.prod(m.kernel_size) * m.in_channels // m.groups
        has_b = m.bias is not None
        return LayerWork(kind="conv", macs=n_out * k, ops=n_out if has_b else 0, weights=m.weight.numel(),
                         biases=m.out_channels if has_b else 0, out_channels=m.out_channels, **common)
    if t == "Linear":
        has_b = m.bias is not None
        return LayerWork(kind="fc", macs=n_out * m.in_features, ops=n_out if has_b else 0,
                         weights=m.weight.numel(), biases=m.out_features if has_b else 0,
                         out_channels=m.out_features, **common)
    if t in ("AvgPool2d", "MaxPool2d"):
        ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
        per_out = math.prod(ks) - 1 + (1 if t == "AvgPool2d" else 0)
        return LayerWork(kind="pool", macs=0, ops=n_out * per_out, weights=0, biases=0, out_channels=0, **common)
    if t in ("BatchNorm1d", "BatchNorm2d"):
        # inference: y = a*x + b per element (a kernel may fold it into the conv: then remove it)
        return LayerWork(kind="bn", macs=0, ops=2 * n_out, weights=0, biases=2 * m.num_features,
                         out_channels=0, **common)
    return LayerWork(kind="act", macs=0, ops=_ACT_OPS[t] * n_out, weights=0, biases=0, out_channels=0, **common)


_SUPPORTED = ("Conv2d", "Linear", "AvgPool2d", "MaxPool2d", "BatchNorm1d", "BatchNorm2d", *_ACT_OPS, *NO_COST_LAYERS)


def _check_supported(name: str, m: nn.Module) -> None:
    t = type(m).__name__
    if t not in _SUPPORTED:
        raise ConfigError(f"the CPU model cannot cost layer {name} ({t}); supported: Conv2d, Linear, AvgPool2d, "
                          f"MaxPool2d, BatchNorm1d/2d, {', '.join(_ACT_OPS)} "
                          f"(and {', '.join(NO_COST_LAYERS)} at no cost)")


def _walk(module: nn.Module, x: Any, prefix: str) -> tuple[list[LayerWork], Any]:
    """Run ``x`` through the leaf modules of ``module`` in order, recording each layer's work."""
    import torch

    layers: list[LayerWork] = []
    with torch.no_grad():
        leaves = leaf_modules(module, prefix)
        for name, m in leaves:
            _check_supported(name, m)  # before running anything: a clear error, not a shape crash
        for name, m in leaves:
            y = m(x)
            lw = _layer_work(name, m, tuple(x.shape), tuple(y.shape))
            if lw is not None:
                layers.append(lw)
            x = y
    return layers, x


def mlp_workload(sizes: Sequence[int], batch: int = 1, activation: str = "Sigmoid",
                 name: str = "mlp") -> Workload:
    """FC layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between layers (and after the
    last one: the IMAC neuron is on every layer) on the CPU, e.g. the binary head's sizes."""
    if len(sizes) < 2:
        raise ConfigError(f"an MLP needs at least two sizes, got {list(sizes)}")
    if activation not in _ACT_OPS:
        raise ConfigError(f"unknown activation {activation!r}; known: {', '.join(_ACT_OPS)}")
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(LayerWork(f"fc{i}", "fc", batch * a * b, batch * b, a * b, b, batch * a, batch * b, b,
                                (batch, a), (batch, b)))
        layers.append(LayerWork(f"fc{i}.act", "act", 0, batch * b * _ACT_OPS[activation], 0, 0, batch * b,
                                batch * b, 0, (batch, b), (batch, b)))
    return Workload(name, batch, tuple(layers))


# workloads already traced, per model object: the counts depend on its layers' shapes only, and a
# study prices the same model for many cores, precisions and energy models
_TRACED: weakref.WeakKeyDictionary[Any, dict[tuple[int, str, str], Workload]] = weakref.WeakKeyDictionary()


def model_workload(model: Any, batch: int = 1, fc: Literal["float", "binary", "none"] = "float",
                   name: str | None = None) -> Workload:
    """Per-layer work of a registered model (or its name) for a batch of ``batch`` images.

    ``fc``: ``float`` adds the float FC head (the CPU-only baseline), ``binary`` the binary head's
    sizes as CPU FC layers with a sigmoid, ``none`` only the conv trunk (what stays on the CPU in
    CPU-IMAC).  A model object is traced once per (batch, fc, name)."""
    if isinstance(model, str):
        from imac.nn.models import build_model

        name = name or model
        model = build_model(model)
    name = name or type(model).__name__
    key = (batch, fc, name)
    traced = _TRACED.setdefault(model, {})
    if key not in traced:
        traced[key] = _trace(model, batch, fc, name)
    return traced[key]


def _trace(model: Any, batch: int, fc: str, name: str) -> Workload:
    import numpy as np
    import torch

    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    if fc not in ("float", "binary", "none"):
        raise ConfigError(f"fc must be 'float', 'binary' or 'none', got {fc!r}")
    model.eval()
    layers: list[LayerWork] = []
    trunk = getattr(model, "trunk", None)
    input_shape = getattr(model, "input_shape", None)
    if input_shape:
        x = model.prepare(np.zeros((batch, *input_shape), dtype=np.uint8))
    else:
        raise ConfigError(f"model {name} has no input_shape to build a dummy input from")
    program = getattr(model, "trunk_program", None)
    if program is not None:  # an imported trunk: counted on its traced graph
        from imac.system.cpu.graph_workload import graph_workload

        layers += graph_workload(program, batch, "trunk")
        with torch.no_grad():
            x = model.features(x)
    elif trunk is not None:
        trunk_layers, x = _walk(trunk, x, "trunk")
        layers += trunk_layers
    if fc == "float":
        head = getattr(model, "float_head", None)
        if head is not None:
            layers += _walk(head, x.reshape(batch, -1), "float_head")[0]
        elif program is not None:  # the user's float head could not be rebuilt exactly: same sizes, ReLU
            # mlp_workload puts an activation after every layer: the logits have none
            layers += [replace(lw, name=f"float_head.{lw.name}")
                       for lw in mlp_workload(model.fc_layer_sizes(), batch, "ReLU").layers[:-1]]
    elif fc == "binary":
        sizes = model.fc_layer_sizes()
        layers += [replace(lw, name=f"head.{lw.name}") for lw in mlp_workload(sizes, batch).layers]
    if not layers:
        raise ConfigError(f"model {name} has no layers for the CPU model (fc={fc!r}): nothing to cost")
    return Workload(name, batch, tuple(layers))


