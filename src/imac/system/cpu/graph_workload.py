"""What an exported trunk asks of the CPU, counted on its aten graph.

The counterpart of :mod:`imac.system.cpu.workload` (which walks the leaf modules of imac's own
models) for networks imported from a user (``torch.export`` programs): the same :class:`LayerWork`
rows with the same conventions, from the shapes each node records in ``node.meta["val"]``.

* convolution: MACs = output elements x kernel elements x C_in / groups, 1 op per output for a bias;
* linear / addmm / mm / matmul: MACs = output elements x fan-in (weights counted when constant);
* max / average pooling (also adaptive and global means): k - 1 compares or adds per output
  (+1 scale for averages), k the window size (adaptive: ceil(in / out) per dimension);
* batch norm (inference): 2 ops per output element, 2 per channel stored;
* element-wise activations: the op counts of ``workload._ACT_OPS`` (a few more stated below);
* add / sub / mul / div (skip connections, scaling): 1 op per output element, kind "act";
* views, concatenation, permutes, dropout, copies: free.  Any other op: a ConfigError naming it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from imac.errors import ConfigError
from imac.system.cpu.workload import _ACT_OPS, SIGMOID_OPS, TANH_OPS, LayerWork

if TYPE_CHECKING:
    from torch.export import ExportedProgram

# aten activation -> ops per output element (the workload.py counts; the extra ones are ours)
ACT_OPS: dict[str, int] = {
    "relu": _ACT_OPS["ReLU"], "relu_": _ACT_OPS["ReLU"], "relu6": _ACT_OPS["ReLU6"],
    "hardtanh": _ACT_OPS["Hardtanh"], "hardtanh_": _ACT_OPS["Hardtanh"], "clamp": 2, "clamp_min": 1,
    "leaky_relu": _ACT_OPS["LeakyReLU"], "leaky_relu_": _ACT_OPS["LeakyReLU"], "prelu": 2, "_prelu_kernel": 2,
    "tanh": _ACT_OPS["Tanh"], "tanh_": _ACT_OPS["Tanh"], "sigmoid": _ACT_OPS["Sigmoid"],
    "sigmoid_": _ACT_OPS["Sigmoid"], "gelu": _ACT_OPS["GELU"], "silu": _ACT_OPS["SiLU"], "silu_": _ACT_OPS["SiLU"],
    # ours: exp-based ones as a sigmoid, piecewise-linear ones as their compares and multiplies
    "elu": SIGMOID_OPS, "elu_": SIGMOID_OPS, "selu": SIGMOID_OPS + 1, "celu": SIGMOID_OPS + 1,
    "softplus": SIGMOID_OPS, "log_sigmoid": SIGMOID_OPS + 1, "mish": TANH_OPS + SIGMOID_OPS + 1,
    "hardsigmoid": 3, "hardswish": 4, "softsign": 3,
}
ELEMENTWISE = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "rsub", "neg", "abs", "eq", "ne", "gt",
               "lt", "ge", "le")
FREE = ("view", "_unsafe_view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose",
        "t", "dropout", "feature_dropout", "alpha_dropout", "clone", "contiguous", "alias", "detach",
        "lift_fresh_copy", "_to_copy", "to", "type_as", "cat", "concat", "stack", "expand", "slice", "select",
        "split", "split_with_sizes", "chunk", "narrow", "getitem", "sym_size", "sym_numel", "sym_stride",
        "_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size", "_assert_async",
        "identity", "pad", "constant_pad_nd", "zeros_like", "ones_like", "zeros", "ones", "full", "arange",
        "scalar_tensor", "size", "dim")
CONV = ("conv1d", "conv2d", "conv3d", "convolution", "_convolution")
POOL = ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "avg_pool1d", "avg_pool2d",
        "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
        "adaptive_max_pool2d", "_adaptive_avg_pool2d", "mean", "amax")
BN = ("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm", "_native_batch_norm_legit")
FC = ("linear", "addmm", "mm", "matmul", "bmm")


def _pair(v: Any, n: int) -> list[int]:
    if isinstance(v, int):
        return [v] * n
    v = [int(x) for x in v]
    return v * n if len(v) == 1 else v


def graph_workload(ep: ExportedProgram, batch: int = 1, name: str = "trunk") -> list[LayerWork]:
    """Per-node CPU work of the whole program ``ep`` for a batch of ``batch`` inputs; rows are
    named ``{name}.{layer}`` with the user's layer names (module paths) where the graph has them."""
    from imac.nn.importers.graph import (
        Constants,
        batch_symbols,
        concrete,
        layer_name,
        op_name,
        shape_of,
    )

    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    sym, static = batch_symbols(ep)
    at = batch if sym is not None else static or 1  # the batch the shapes are taken at
    consts = Constants(ep)
    rows: list[LayerWork] = []
    used: dict[str, int] = {}

    def shp(node: Any) -> tuple[int, ...]:
        s = shape_of(node)
        if s is None:
            raise ConfigError(f"node {node.name} of the trunk has no recorded shape")
        return concrete(s, sym, at)

    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        op = op_name(node)
        if op in FREE:
            continue
        x = node.args[0] if node.args else None
        out = shape_of(node)
        if out is None:  # e.g. max_pool2d_with_indices returns a tuple: take the values
            val = node.meta.get("val")
            if isinstance(val, tuple | list) and val and hasattr(val[0], "shape"):
                y_shape = concrete(tuple(val[0].shape), sym, at)
            else:
                raise ConfigError(f"node {node.name} ({op}) of the trunk has no recorded shape")
        else:
            y_shape = concrete(out, sym, at)
        x_shape = shp(x) if hasattr(x, "op") and shape_of(x) is not None else y_shape
        n_in, n_out = math.prod(x_shape), math.prod(y_shape)
        lname = layer_name(node)
        used[lname] = used.get(lname, 0) + 1
        if used[lname] > 1:
            lname = f"{lname}.{node.name}"
        common: dict[str, Any] = {"name": f"{name}.{lname}", "in_elems": n_in, "out_elems": n_out,
                                  "in_shape": x_shape, "out_shape": y_shape}
        if op in CONV:
            if op in ("convolution", "_convolution") and len(node.args) > 6 and node.args[6]:
                raise ConfigError(f"the CPU model cannot cost {lname} (transposed convolution)")
            w_shape = shp(node.args[1])
            has_b = len(node.args) > 2 and node.args[2] is not None
            k = math.prod(w_shape[1:])  # C_in / groups x kernel elements
            rows.append(LayerWork(kind="conv", macs=n_out * k, ops=n_out if has_b else 0, weights=math.prod(w_shape),
                                  biases=w_shape[0] if has_b else 0, out_channels=w_shape[0], **common))
        elif op in FC:
            if op == "linear":
                w_shape, has_b = shp(node.args[1]), len(node.args) > 2 and node.args[2] is not None
                fan_in, const_w = w_shape[1], True
            elif op == "addmm":
                w_shape, has_b = shp(node.args[2]), True
                fan_in, const_w = w_shape[0], consts.get(node.args[2]) is not None
                x_shape = shp(node.args[1])
                common.update(in_elems=math.prod(x_shape), in_shape=x_shape)
            else:
                w_shape, has_b = shp(node.args[1]), False
                fan_in, const_w = w_shape[-2], consts.get(node.args[1]) is not None
            outs = y_shape[-1]
            rows.append(LayerWork(kind="fc", macs=n_out * fan_in, ops=n_out if has_b else 0,
                                  weights=math.prod(w_shape) if const_w else 0, biases=outs if has_b else 0,
                                  out_channels=outs, **common))
        elif op in POOL:
            rows.append(LayerWork(kind="pool", macs=0, ops=n_out * _pool_ops(node, op, x_shape, y_shape),
                                  weights=0, biases=0, out_channels=0, **common))
        elif op in BN:
            channels = x_shape[1] if len(x_shape) > 1 else x_shape[0]
            rows.append(LayerWork(kind="bn", macs=0, ops=2 * n_out, weights=0, biases=2 * channels,
                                  out_channels=0, **common))
        elif op in ACT_OPS:
            rows.append(LayerWork(kind="act", macs=0, ops=ACT_OPS[op] * n_out, weights=0, biases=0,
                                  out_channels=0, **common))
        elif op in ELEMENTWISE:
            rows.append(LayerWork(kind="act", macs=0, ops=n_out, weights=0, biases=0, out_channels=0, **common))
        else:
            raise ConfigError(f"the CPU model cannot cost {lname} (aten op {op}); supported: convolution, "
                              "linear/addmm/mm/matmul, max/average/adaptive pooling, batch norm, element-wise "
                              f"activations ({', '.join(sorted({k.rstrip('_') for k in ACT_OPS}))}), add/sub/mul/div, "
                              "and views, concatenation, dropout at no cost")
    if static is not None and static != batch:  # a program fixed to another batch size: counts scale with it
        rows = [_rescale(r, batch, static) for r in rows]
    return rows


def _pool_ops(node: Any, op: str, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> int:
    """Ops per output element of a pooling node."""
    avg = "avg" in op or op == "mean"
    if op in ("mean", "amax"):
        dims = node.args[1] if len(node.args) > 1 else list(range(len(x_shape)))
        dims = [dims] if isinstance(dims, int) else list(dims)
        window = math.prod(x_shape[d] for d in dims)
    elif "adaptive" in op:
        spatial = len(x_shape) - 2 if len(x_shape) > 2 else 1
        window = math.prod(math.ceil(i / o) for i, o in zip(x_shape[-spatial:], y_shape[-spatial:], strict=True))
    else:
        spatial = len(x_shape) - 2
        window = math.prod(_pair(node.args[1], spatial))
    return window - 1 + (1 if avg else 0)


def _rescale(r: LayerWork, batch: int, static: int) -> LayerWork:
    def sc(v: int) -> int:
        return v * batch // static

    def sh(s: tuple[int, ...]) -> tuple[int, ...]:
        return (batch, *s[1:]) if s and s[0] == static else s

    return LayerWork(r.name, r.kind, sc(r.macs), sc(r.ops), r.weights, r.biases, sc(r.in_elems), sc(r.out_elems),
                     r.out_channels, sh(r.in_shape), sh(r.out_shape))
