"""Split an exported network into a CPU trunk and the trailing chain of fully-connected layers.

The rule (docs/import.md): from the network's output walk back through an optional final
softmax / log-softmax (dropped: it does not change the argmax), fully-connected layers (aten
``linear``, ``addmm``, ``mm``/``matmul`` by a constant, + a constant bias), one element-wise
activation between two of them (or after the last one) and no-op views.  Every node of that chain
must have exactly one user, the next node of the chain.  The first node that does not fit is the
trunk's output; the trunk is re-exported computing that node, flattened to (N, F).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from imac.errors import ConfigError
from imac.hardware.mapping import WeightShape
from imac.nn.importers.graph import (
    ACTIVATIONS,
    SOFTMAX,
    Constants,
    is_call,
    is_view,
    kind_words,
    layer_name,
    ndim,
    op_name,
    same_shape,
    shape_of,
    user_input,
    users,
)

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.export import ExportedProgram
    from torch.fx import Node

SOURCES = ("pytorch", "torchscript", "torch.export", "onnx")


@dataclass
class FloatFC(WeightShape):
    """One fully-connected layer of the user's float head."""

    weight: np.ndarray  # (out, in) float64
    bias: np.ndarray | None  # (out,)
    activation: str | None  # element-wise activation AFTER this layer (None: none, e.g. the logits)
    name: str  # the layer's name in the user's graph (module path or node name)


@dataclass
class SplitNetwork:
    """A user's network as a CPU trunk (input batch -> (N, F) features) and an FC head."""

    trunk: ExportedProgram | None
    head: list[FloatFC]
    input_shape: tuple[int, ...]
    source: str
    trunk_ops: list[str]
    notes: list[str] = field(default_factory=list)
    program: ExportedProgram | None = field(default=None, repr=False)  # the whole network as imported
    # how to apply each head activation exactly as the user's graph does: (aten op, other args, kwargs)
    activation_ops: list[tuple[Any, tuple[Any, ...], dict[str, Any]] | None] = field(default_factory=list,
                                                                                    repr=False)
    _trunk_mod: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def features(self) -> int:
        """F: the number of trunk features, the head's fan-in."""
        return self.head[0].fan_in

    @property
    def sizes(self) -> list[int]:
        """The head's layer sizes ``[F, h1, ..., classes]``."""
        return [self.features, *(fc.fan_out for fc in self.head)]

    def trunk_module(self) -> nn.Module | None:
        """The trunk as a callable module (``trunk.module()``), None when there is no trunk."""
        if self.trunk is None:
            return None
        if self._trunk_mod is None:
            self._trunk_mod = _callable(self.trunk)
        return self._trunk_mod

    def features_of(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's (N, F) features of a batch ``x`` (the flattened input without a trunk)."""
        import torch

        with torch.no_grad():
            mod = self.trunk_module()
            h = x if mod is None else mod(x)
            return h.reshape(h.shape[0], -1)

    def head_forward(self, h: torch.Tensor) -> torch.Tensor:
        """The float head on features ``h`` (N, F), activations exactly as in the user's graph."""
        import torch

        with torch.no_grad():
            for i, fc in enumerate(self.head):
                w = torch.as_tensor(fc.weight, dtype=h.dtype)
                b = None if fc.bias is None else torch.as_tensor(fc.bias, dtype=h.dtype)
                h = torch.nn.functional.linear(h, w, b)
                act = self.activation_ops[i] if i < len(self.activation_ops) else None
                if act is not None:
                    op, args, kwargs = act
                    h = op(h, *args, **kwargs)
                elif fc.activation is not None:
                    raise ConfigError(f"no way to apply activation {fc.activation} of {fc.name}")
        return h

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole float network, trunk then head: the user's logits (before a dropped softmax)."""
        return self.head_forward(self.features_of(x))

    def describe(self) -> str:
        lines = [f"source: {self.source}, input {self.input_shape}",
                 f"trunk: {len(self.trunk_ops)} ops -> {self.features} features" if self.trunk is not None
                 else f"trunk: none (input flattened to {self.features} features)",
                 "head: " + " -> ".join(str(s) for s in self.sizes)]
        lines += [f"  {fc.name}: {fc.fan_in} -> {fc.fan_out}, bias {'yes' if fc.bias is not None else 'no'}, "
                  f"then {fc.activation or 'nothing'}" for fc in self.head]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


class _BatchLoop:
    """Runs a module exported for a fixed batch size on any batch, chunk by chunk (the last chunk
    padded with zeros, its padding dropped)."""

    def __init__(self, mod: Any, size: int) -> None:
        self.mod, self.size = mod, size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        outs = []
        for i in range(0, x.shape[0], self.size):
            chunk = x[i: i + self.size]
            n = chunk.shape[0]
            if n < self.size:
                chunk = torch.cat([chunk, chunk.new_zeros((self.size - n, *chunk.shape[1:]))])
            outs.append(self.mod(chunk)[:n])
        return torch.cat(outs)

    def eval(self) -> _BatchLoop:
        return self


def _callable(ep: ExportedProgram) -> Any:
    from imac.nn.importers.graph import batch_symbols

    mod = ep.module()
    sym, static = batch_symbols(ep)
    if sym is None and static is not None:
        return _BatchLoop(mod, static)
    return mod


# ------------------------------------------------------------------------------------------ export


def example_input(input_shape: tuple[int, ...], batch: int) -> torch.Tensor:
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn((batch, *input_shape), generator=g)


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape must be a tuple of positive integers, got {input_shape!r}") from None
    if not shape or any(d < 1 for d in shape) or any(float(d) != float(e) for d, e in zip(shape, input_shape,
                                                                                            strict=True)):
        raise ConfigError(f"input_shape must be a tuple of positive integers (one sample, no batch dim), "
                          f"got {input_shape!r}")
    return shape


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def export_module(module: Any, input_shape: tuple[int, ...], what: str) -> ExportedProgram:
    """``module`` (eval mode) exported with a dynamic batch dimension, or for batch 1 if its
    code fixes the batch size."""
    import torch
    from torch.export import Dim

    if hasattr(module, "eval"):
        try:
            module.eval()
        except NotImplementedError:
            pass  # a module unlifted from an ExportedProgram: its mode was fixed when it was exported
    try:
        with torch.no_grad():
            module(example_input(input_shape, 2))
    except Exception as err:
        raise ConfigError(f"{what}: the network does not run on inputs of shape (N, {', '.join(map(str, input_shape))})"
                          f": {_first_line(err)}") from None
    try:
        return torch.export.export(module, (example_input(input_shape, 2),),
                                   dynamic_shapes=({0: Dim("batch", min=1)},), strict=False)
    except Exception as dyn_err:
        try:
            return torch.export.export(module, (example_input(input_shape, 1),), strict=False)
        except Exception:
            raise ConfigError(f"{what}: torch.export could not trace the network: {_first_line(dyn_err)}") from None


# ------------------------------------------------------------------------------------------- split


@dataclass
class _FC:
    out: Node  # the node holding the layer's output
    x: Node  # its input
    weight: Any  # torch tensor (out, in)
    bias: Any  # torch tensor (out,) or None
    nodes: list[Node]  # the graph nodes of the layer (linear, or mm + add)


def _match_fc(node: Any, consts: Constants) -> _FC | None:
    """``node`` as a fully-connected layer on a 2-D input, or None."""
    if not is_call(node) or ndim(node) != 2:
        return None
    op = op_name(node)
    a = node.args
    if op == "linear" and len(a) >= 2:
        w = consts.get(a[1])
        b = consts.get(a[2]) if len(a) > 2 and a[2] is not None else None
        if w is None or w.dim() != 2 or (len(a) > 2 and a[2] is not None and b is None):
            return None
        return _FC(node, a[0], w, b, [node]) if ndim(a[0]) == 2 else None
    if op == "addmm" and len(a) == 3:
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            return None
        b, wt = consts.get(a[0]), consts.get(a[2])
        if b is None or wt is None or wt.dim() != 2 or ndim(a[1]) != 2 or b.numel() != wt.shape[1]:
            return None
        return _FC(node, a[1], wt.t(), b.reshape(-1), [node])
    if op in ("mm", "matmul") and len(a) == 2:
        wt = consts.get(a[1])
        if wt is None or wt.dim() != 2 or ndim(a[0]) != 2:
            return None
        return _FC(node, a[0], wt.t(), None, [node])
    if op == "add" and len(a) == 2 and node.kwargs.get("alpha", 1) == 1:
        for inner, other in ((a[0], a[1]), (a[1], a[0])):
            b = consts.get(other)
            if b is None or not is_call(inner) or len(users(inner)) != 1:
                continue
            fc = _match_fc(inner, consts)
            if fc is None or fc.bias is not None or b.numel() != fc.weight.shape[0] or b.dim() > 2:
                continue
            return _FC(node, fc.x, fc.weight, b.reshape(-1), [*fc.nodes, node])
    return None


def _match_act(node: Any, consts: Constants) -> tuple[str, tuple[Any, tuple[Any, ...], dict[str, Any]]] | None:
    """``node`` as an element-wise activation of its first argument: (name, how to apply it)."""
    if not is_call(node) or op_name(node) not in ACTIVATIONS or not node.args or not hasattr(node.args[0], "op"):
        return None
    ok, rest = consts.literal(tuple(node.args[1:]))
    okk, kwargs = consts.literal(dict(node.kwargs).values())
    if not (ok and okk) or not same_shape(node, node.args[0]):
        return None
    return ACTIVATIONS[op_name(node)], (node.target, tuple(rest), dict(zip(node.kwargs, kwargs, strict=True)))


def _below_views(node: Any) -> Any:
    """Walk down through no-op views (same shape, one user each) from ``node``."""
    while is_view(node) and len(users(node)) == 1 and same_shape(node, node.args[0]):
        node = node.args[0]
    return node


def _single(node: Any) -> bool:
    return len(users(node)) == 1


def _describe_end(node: Any) -> str:
    """'conv3 (convolution)' for the node a refused network ends with (activations looked through)."""
    while is_view(node):
        node = node.args[0]
    seen = node
    while is_call(seen) and (op_name(seen) in ACTIVATIONS or is_view(seen)) and seen.args:
        seen = seen.args[0]
    if not is_call(seen):
        seen = node
    text = f"{layer_name(seen)} ({kind_words(seen)})"
    if seen is not node:
        text += f" followed by {layer_name(node)} ({kind_words(node)})"
    return text


def split_program(ep: ExportedProgram, source: str, what: str = "network") -> SplitNetwork:
    """Split an exported network (one input, one output tensor) into trunk and FC head."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    graph = ep.graph
    consts = Constants(ep)
    inp = user_input(ep)
    in_shape = shape_of(inp)
    if in_shape is None or any(not isinstance(d, int) for d in in_shape[1:]):
        raise ConfigError(f"{what}: the input's sample shape must be fixed, got {in_shape}")
    input_shape = tuple(int(d) for d in in_shape[1:])
    out_node = next(n for n in graph.nodes if n.op == "output")
    outs = out_node.args[0]
    outs = list(outs) if isinstance(outs, list | tuple) else [outs]
    if len(outs) != 1 or not hasattr(outs[0], "op"):
        raise ConfigError(f"{what}: the network returns {len(outs)} values; imac imports networks with one "
                          "output tensor (the logits)")
    notes: list[str] = []
    end = outs[0]
    if is_call(end) and op_name(end) in SOFTMAX and _single(end):
        dim = end.args[1] if len(end.args) > 1 else end.kwargs.get("dim")
        if ndim(end) == 2 and dim in (1, -1):
            notes.append(f"the final {op_name(end).lstrip('_')} ({layer_name(end)}) is dropped: it does not "
                         "change the predicted class")
            end = end.args[0]
    if not _single(end):
        raise ConfigError(f"{what}: the network's output {layer_name(end)} is also used inside the network; "
                          "IMAC runs a trailing chain of Linear layers")
    # the last FC, possibly followed by an activation (e.g. a final sigmoid)
    chain: list[tuple[_FC, Any]] = []  # (layer, activation node or None), last layer first
    cur = _below_views(end)
    pending = None
    act = _match_act(cur, consts)
    if act is not None and _single(cur):
        below = _below_views(cur.args[0])
        if _match_fc(below, consts) is not None and _single(below):
            pending, cur = cur, below
    trunk_out = None
    while True:
        fc = _match_fc(cur, consts) if _single(cur) else None
        if fc is None:
            break
        chain.append((fc, pending))
        pending = None
        x = fc.x
        below = _below_views(x)
        if _single(below):
            if _match_act(below, consts) is not None:
                b2 = _below_views(below.args[0])
                if _single(b2) and _match_fc(b2, consts) is not None:
                    pending, cur = below, b2
                    continue
            elif _match_fc(below, consts) is not None:
                cur = below
                continue
        trunk_out = x
        break
    if not chain:
        any_fc = any(is_call(n) and op_name(n) in ("linear", "addmm", "mm", "matmul") for n in graph.nodes)
        if not any_fc:
            raise ConfigError(f"{what}: the network has no fully-connected layer (it ends with {_describe_end(end)})"
                              ": IMAC runs the trailing chain of Linear layers")
        last = end
        while is_view(last):
            last = last.args[0]
        if is_call(last) and op_name(last) in ("linear", "addmm", "mm", "matmul"):
            raise ConfigError(f"{what}: the network ends with {layer_name(last)}, a matrix product whose weights "
                              "are not fixed parameters or whose input is not one (N, F) matrix per batch: IMAC "
                              "runs a trailing chain of Linear layers with fixed weights on flattened features")
        raise ConfigError(f"{what}: the network ends with {_describe_end(end)}, not a fully-connected layer: "
                          "IMAC runs the trailing chain of Linear layers")
    chain.reverse()
    head: list[FloatFC] = []
    act_ops: list[Any] = []
    for fc, act_node in chain:
        act_name, act_op = (None, None)
        if act_node is not None:
            act_name, act_op = _match_act(act_node, consts)  # type: ignore[misc]
        head.append(FloatFC(weight=fc.weight.detach().double().cpu().numpy().copy(),
                            bias=None if fc.bias is None else fc.bias.detach().double().cpu().numpy().copy(),
                            activation=act_name, name=layer_name(fc.nodes[0])))
        act_ops.append(act_op)
    for prev, nxt in itertools.pairwise(head):
        if prev.fan_out != nxt.fan_in:  # cannot happen for a graph that ran, but a clear error if it does
            raise ConfigError(f"{what}: {prev.name} has {prev.fan_out} outputs but {nxt.name} takes {nxt.fan_in}")
    assert trunk_out is not None
    base: Any = trunk_out
    while is_view(base):
        base = base.args[0]
    trunk_shape = shape_of(trunk_out)
    feats = math.prod(int(d) for d in (trunk_shape or (0, 0))[1:])
    if base is inp:
        trunk = None
        trunk_ops: list[str] = []
        feats = math.prod(input_shape)
    else:
        trunk, trunk_ops = _trunk_program(ep, trunk_out, input_shape, what)
    if feats != head[0].fan_in:
        raise ConfigError(f"{what}: the trunk gives {feats} features but {head[0].name} takes {head[0].fan_in}")
    return SplitNetwork(trunk=trunk, head=head, input_shape=input_shape, source=source, trunk_ops=trunk_ops,
                        notes=notes, program=ep, activation_ops=act_ops)


def _prune(g: Any, out: Any) -> None:
    """Erase every node the output does not need (also dropout, which fx's DCE keeps as impure)."""
    needed: set[Any] = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        stack.extend(n.all_input_nodes)
    for n in reversed(list(g.nodes)):
        if n in needed or n.op in ("placeholder", "output") or (n.op == "call_module" and n.target == "_guards_fn"):
            continue
        if not n.users:
            g.erase_node(n)


def _trunk_program(ep: ExportedProgram, trunk_out: Node, input_shape: tuple[int, ...],
                   what: str) -> tuple[ExportedProgram, list[str]]:
    """The trunk (input -> ``trunk_out`` flattened) as a new ExportedProgram, and its op list."""
    import torch
    from torch.export import Dim

    from imac.nn.importers.graph import META_OPS, batch_symbols

    gm = ep.module()
    g = gm.graph
    nodes = {n.name: n for n in g.nodes}
    if trunk_out.name not in nodes:
        raise ConfigError(f"{what}: cannot find the trunk's output {trunk_out.name} in the unlifted graph")
    node = nodes[trunk_out.name]
    out = next(n for n in g.nodes if n.op == "output")
    if ndim(trunk_out) != 2:
        with g.inserting_after(node):
            node = g.call_function(torch.ops.aten.flatten.using_ints, (node, 1))
    old = out.args[0]
    out.args = ((node,),) if isinstance(old, list | tuple) else (node,)
    _prune(g, out)
    g.lint()
    gm.recompile()
    if hasattr(gm, "delete_all_unused_submodules"):
        gm.delete_all_unused_submodules()
    sym, static = batch_symbols(ep)
    try:
        if sym is not None:
            trunk = torch.export.export(gm, (example_input(input_shape, 2),),
                                        dynamic_shapes=({0: Dim("batch", min=1)},), strict=False)
        else:
            trunk = torch.export.export(gm, (example_input(input_shape, static or 1),), strict=False)
    except Exception as err:
        raise ConfigError(f"{what}: could not export the CPU trunk: {_first_line(err)}") from None
    ops = [f"{layer_name(n)}: {kind_words(n)}" for n in trunk.graph.nodes
           if n.op == "call_function" and op_name(n) not in META_OPS]
    return trunk, ops
