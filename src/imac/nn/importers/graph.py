"""Reading an exported aten graph: op names, layer names, constants, and which nodes are views.

Shared by the split (:mod:`imac.nn.importers.split`) and the CPU work counter
(:mod:`imac.system.cpu.graph_workload`).  Every helper takes ``torch.fx`` nodes of a
``torch.export.ExportedProgram`` graph (parameters and buffers lifted to placeholders).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from imac.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch.export import ExportedProgram
    from torch.fx import Node

# element-wise activations (aten op name -> the name recorded in FloatFC.activation)
ACTIVATIONS = {
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "hardtanh": "hardtanh", "hardtanh_": "hardtanh",
    "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu", "gelu": "gelu", "silu": "silu", "silu_": "silu",
    "elu": "elu", "elu_": "elu", "selu": "selu", "celu": "celu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "tanh": "tanh", "tanh_": "tanh", "softplus": "softplus", "mish": "mish", "hardsigmoid": "hardsigmoid",
    "hardswish": "hardswish", "prelu": "prelu", "_prelu_kernel": "prelu", "clamp": "clamp",
    "clamp_min": "clamp", "log_sigmoid": "log_sigmoid", "softsign": "softsign",
}
SOFTMAX = ("softmax", "_softmax", "log_softmax", "_log_softmax")
# ops that only re-view or copy their first argument (no arithmetic) at inference
VIEWS = ("view", "_unsafe_view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "dropout",
         "feature_dropout", "alpha_dropout", "clone", "contiguous", "alias", "detach", "lift_fresh_copy",
         "_to_copy", "to", "type_as")
# ops that make a constant tensor from nothing (folded into constants)
FACTORIES = ("zeros", "ones", "full", "arange", "scalar_tensor", "tensor", "eye", "linspace")
# nodes that read a tensor's metadata only: they do not count as users of a value
META_OPS = ("sym_size", "sym_numel", "sym_stride", "sym_storage_offset", "_assert_tensor_metadata",
            "_assert_scalar", "sym_constrain_range_for_size", "_assert_async", "_guards_fn")

_KIND_WORDS = {
    "conv1d": "convolution", "conv2d": "convolution", "conv3d": "convolution", "convolution": "convolution",
    "_convolution": "convolution", "max_pool1d": "max pooling", "max_pool2d": "max pooling",
    "max_pool2d_with_indices": "max pooling", "max_pool3d": "max pooling", "avg_pool1d": "average pooling",
    "avg_pool2d": "average pooling", "adaptive_avg_pool1d": "adaptive average pooling",
    "adaptive_avg_pool2d": "adaptive average pooling", "adaptive_max_pool2d": "adaptive max pooling",
    "mean": "mean (global pooling)", "amax": "max (global pooling)", "batch_norm": "batch norm",
    "_native_batch_norm_legit_no_training": "batch norm", "layer_norm": "layer norm", "add": "addition",
    "sub": "subtraction", "mul": "multiplication", "div": "division", "cat": "concatenation",
    "linear": "fully-connected", "addmm": "fully-connected", "mm": "matrix product", "matmul": "matrix product",
    "permute": "permutation", "transpose": "transposition",
}


def op_name(node: Node) -> str:
    """The aten op's name without namespace and overload (``aten.conv2d.default`` -> ``conv2d``)."""
    target = node.target
    packet = getattr(target, "_overloadpacket", None)
    if packet is not None:
        return str(getattr(packet, "__name__", packet)).split(".")[-1]
    return str(getattr(target, "__name__", target)).split(".")[-1]


def kind_words(node: Node) -> str:
    name = op_name(node)
    if name in ACTIVATIONS:
        return f"{ACTIVATIONS[name]} activation"
    if name in SOFTMAX:
        return name
    return _KIND_WORDS.get(name, name)


def layer_name(node: Node) -> str:
    """The user's name for the layer that made ``node``: its module path, else the node's name."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] for v in stack.values() if isinstance(v, tuple) and v and isinstance(v[0], str)]
    paths = [p for p in paths if p and not p.startswith("_empty")]
    if paths:
        path = paths[-1]
        # a module calling a functional op in its forward: the module path alone would name its
        # whole block, so add the op's node name unless the module is the op itself (a leaf)
        mod_type = str(list(stack.values())[-1][1]) if stack else ""
        if mod_type.startswith("torch.nn.modules.") or "onnx2torch" in mod_type:
            return path
        return f"{path}.{node.name}"
    return node.name


def is_call(node: Any) -> bool:
    return getattr(node, "op", None) == "call_function"


def users(node: Node) -> list[Node]:
    """Users of ``node`` other than metadata reads (``x.size(0)``, shape asserts)."""
    return [u for u in node.users if not (u.op in ("call_function", "call_module") and op_name(u) in META_OPS)]


def shape_of(node: Any) -> tuple[Any, ...] | None:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    shape = getattr(val, "shape", None)
    return tuple(shape) if shape is not None else None


def ndim(node: Any) -> int:
    s = shape_of(node)
    return -1 if s is None else len(s)


def is_view(node: Any) -> bool:
    return is_call(node) and op_name(node) in VIEWS and bool(node.args)


def same_shape(a: Any, b: Any) -> bool:
    sa, sb = shape_of(a), shape_of(b)
    if sa is None or sb is None or len(sa) != len(sb):
        return False
    return all(str(x) == str(y) for x, y in zip(sa, sb, strict=True))


class Constants:
    """Tensors the graph holds: parameters, buffers, lifted constants, and values computed from
    them alone (``w.t()``), evaluated on demand."""

    def __init__(self, ep: ExportedProgram) -> None:
        sig = ep.graph_signature
        self._by_name: dict[str, torch.Tensor] = {}
        state, consts = ep.state_dict, getattr(ep, "constants", {}) or {}
        for mapping in (sig.inputs_to_parameters, sig.inputs_to_buffers, sig.inputs_to_lifted_tensor_constants):
            for node_name, target in mapping.items():
                t = state[target] if target in state else consts.get(target)
                if t is not None:
                    self._by_name[node_name] = t.detach()
        self._cache: dict[str, torch.Tensor | None] = {}

    def get(self, arg: Any) -> torch.Tensor | None:
        """The tensor ``arg`` (a node) always holds, or None when it depends on the input."""
        if not hasattr(arg, "op"):
            return None
        if arg.name in self._cache:
            return self._cache[arg.name]
        value: torch.Tensor | None = None
        if arg.op == "placeholder":
            value = self._by_name.get(arg.name)
        elif arg.op == "call_function" and op_name(arg) not in META_OPS:
            value = self._fold(arg)
        self._cache[arg.name] = value
        return value

    def _fold(self, node: Node) -> torch.Tensor | None:
        import torch

        inputs: list[Any] = [a for a in (*node.args, *node.kwargs.values()) if hasattr(a, "op")]
        if not inputs and op_name(node) not in FACTORIES:
            return None  # random or unknown factories are not constants
        resolved = {}
        for a in inputs:
            t = self.get(a)
            if t is None:
                return None
            resolved[a.name] = t

        def sub(x: Any) -> Any:
            if hasattr(x, "op"):
                return resolved[x.name]
            if isinstance(x, list | tuple):
                return type(x)(sub(y) for y in x)
            return x

        with torch.no_grad():
            out = node.target(*sub(node.args), **{k: sub(v) for k, v in node.kwargs.items()})  # type: ignore[operator]
        return out if isinstance(out, torch.Tensor) else None

    def literal(self, arg: Any) -> tuple[bool, Any]:
        """(True, value) for an argument that does not depend on the input (a number, a list, a
        constant tensor), (False, None) otherwise."""
        if hasattr(arg, "op"):
            t = self.get(arg)
            return (t is not None), t
        if isinstance(arg, list | tuple):
            vals = [self.literal(a) for a in arg]
            if all(ok for ok, _ in vals):
                return True, type(arg)(v for _, v in vals)
            return False, None
        return True, arg


def batch_symbols(ep: ExportedProgram) -> tuple[Any, int | None]:
    """(the sympy symbol of the batch dimension or None, the static batch size or None)."""
    inp = user_input(ep)
    shape = shape_of(inp)
    if not shape:
        raise ConfigError("the exported network's input has no recorded shape")
    d0 = shape[0]
    if isinstance(d0, int):
        return None, int(d0)
    return d0.node.expr, None


def user_input(ep: ExportedProgram) -> Node:
    names = list(ep.graph_signature.user_inputs)
    if len(names) != 1:
        raise ConfigError(f"the network takes {len(names)} inputs ({', '.join(map(str, names))}); "
                          "imac imports networks with one input tensor")
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name == names[0]:
            return node
    raise ConfigError(f"input {names[0]} not found in the exported graph")


def concrete(shape: tuple[Any, ...], batch_sym: Any, batch: int) -> tuple[int, ...]:
    """``shape`` with the batch symbol set to ``batch`` (a shape without symbols as it is)."""
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(int(d))
            continue
        expr = d.node.expr
        free: set[Any] = getattr(expr, "free_symbols", set())
        if batch_sym is None or any(s != batch_sym for s in free):
            raise ConfigError(f"a tensor of the network has a data-dependent shape {shape}: only the batch "
                              "dimension may vary")
        out.append(int(expr.subs({batch_sym: batch})))
    return tuple(out)


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
