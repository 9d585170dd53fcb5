"""Declarative networks: one YAML file defines a network with a binary IMAC head.

A network spec names its data, how images become the network input, an optional CPU trunk (a
list of layers), the IMAC head (hidden sizes, neuron scales, how features become +-1 inputs), an
optional float head (the CPU-only baseline trained on the same features) and its training
settings.  The shipped models are such files (``imac/networks/*.yaml``); ``imac train
SPEC.yaml`` trains a user's without any Python.  Example::

    name: my-lenet
    dataset: mnist                 # mnist, cifar10, or a data spec YAML (see docs/data.md)
    input: {pad: 2, normalize: true}
    trunk:
      - conv: {out: 6, kernel: 5}
      - tanh
      - avgpool: 2
      - conv: {out: 16, kernel: 5}
      - tanh
      - avgpool: 2
      - flatten
    head: {hidden: [120, 84], float_head: {activation: tanh}}
    train: {epochs: 20, batch_size: 120, lr: 0.002}

Layer kinds (one per list item: a bare name, or a one-key mapping with its arguments): ``conv``
(out, kernel, stride, padding, groups, bias), ``linear`` (out, bias), ``batchnorm``,
``maxpool``/``avgpool`` (kernel, stride), ``dropout`` (p), ``flatten`` and the activations
``relu``, ``relu6``, ``leaky_relu`` (slope), ``tanh``, ``sigmoid``, ``hardtanh``, ``gelu``,
``silu``.  A trunk must end in features of shape (N, F): end it with ``flatten`` after
convolutions.  ``trunk: imported`` marks a network whose trunk is a traced program carried by its
checkpoint (:mod:`imac.nn.importers`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from imac.config.base import Spec, parse_spec, read_yaml
from imac.errors import ConfigError

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
BUILTIN_DATASETS = ("mnist", "cifar10")

# Neuron scales, V per unit of u = raw sum / sqrt(fan_in).  First layers see +-1 inputs whose
# sums correlate strongly after training (|u| of several units), so they get a gentle 0.1 V
# (neuron swings over |u| <~ 3); deeper layers see 0..1 neuron outputs and use 0.5 V (swing
# over |u| <~ 0.6).  Chosen by short MNIST runs: 0.17/0.5 V on the first layer saturated the
# hidden neurons and stalled training, 0.05 V learnt slower.
FIRST_SCALE_V = 0.1
HIDDEN_SCALE_V = 0.5


def default_scales(n_layers: int) -> tuple[float, ...]:
    return (FIRST_SCALE_V,) + (HIDDEN_SCALE_V,) * (n_layers - 1)


# -- layers ----------------------------------------------------------------------------------------
class ConvArgs(Spec):
    out: int = Field(ge=1, le=65536)
    kernel: int = Field(3, ge=1, le=64)
    stride: int = Field(1, ge=1, le=64)
    padding: int = Field(0, ge=0, le=64)
    groups: int = Field(1, ge=1, le=65536)
    bias: bool = True


class LinearArgs(Spec):
    out: int = Field(ge=1, le=1 << 20)
    bias: bool = True


class PoolArgs(Spec):
    kernel: int = Field(2, ge=1, le=64)
    stride: int | None = Field(None, ge=1, le=64)  # None: = kernel


class DropoutArgs(Spec):
    p: float = Field(0.5, ge=0.0, lt=1.0)


class LeakyArgs(Spec):
    slope: float = Field(0.01, ge=0.0, le=1.0)


class NoArgs(Spec):
    pass


LAYER_ARGS: dict[str, type[Spec]] = {
    "conv": ConvArgs, "linear": LinearArgs, "maxpool": PoolArgs, "avgpool": PoolArgs, "dropout": DropoutArgs,
    "leaky_relu": LeakyArgs, "batchnorm": NoArgs, "flatten": NoArgs, "relu": NoArgs, "relu6": NoArgs,
    "tanh": NoArgs, "sigmoid": NoArgs, "hardtanh": NoArgs, "gelu": NoArgs, "silu": NoArgs,
}
# the short form `maxpool: 2` / `dropout: 0.3` / `conv: 16` gives this argument
SHORT_ARG = {"conv": "out", "linear": "out", "maxpool": "kernel", "avgpool": "kernel", "dropout": "p",
             "leaky_relu": "slope"}
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "tanh", "sigmoid", "hardtanh", "gelu", "silu")


class Layer(Spec):
    """One trunk layer: its kind and validated arguments."""

    kind: str
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_args(self) -> Layer:
        if self.kind not in LAYER_ARGS:
            raise ValueError(f"unknown layer kind {self.kind!r}; known: {', '.join(sorted(LAYER_ARGS))}")
        LAYER_ARGS[self.kind].model_validate(self.args)
        return self

    @property
    def params(self) -> Any:
        return LAYER_ARGS[self.kind].model_validate(self.args)


def _parse_layer(item: Any) -> dict[str, Any]:
    """A YAML layer item (``relu``, ``{maxpool: 2}``, ``{conv: {out: 6, kernel: 5}}``) -> Layer data."""
    if isinstance(item, Layer):
        return item.model_dump()
    if isinstance(item, str):
        return {"kind": item}
    if isinstance(item, dict) and set(item) in ({"kind", "args"}, {"kind"}):
        return dict(item)
    if isinstance(item, dict) and len(item) == 1:
        (kind, args), = item.items()
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            if kind not in SHORT_ARG:
                raise ValueError(f"layer {kind!r} takes no short argument (got {args!r})")
            args = {SHORT_ARG[kind]: args}
        return {"kind": kind, "args": args}
    raise ValueError(f"a layer is a name or a one-key mapping such as {{conv: {{out: 8}}}}, got {item!r}")


# -- the network -----------------------------------------------------------------------------------
class InputSpec(Spec):
    """How stored images become the network input: scaled to 0..1 (the data set's scale), zero
    padded by ``pad`` pixels on each side, standardised with the data set's mean/std when
    ``normalize``; or, with ``binarize_at``, flattened raw pixels as +-1 (+1 where the stored
    value >= binarize_at): an IMAC-only network with no trunk."""

    pad: int = Field(0, ge=0, le=64)
    normalize: bool = True
    binarize_at: float | None = None
    channels_last: bool = False  # run convolutions channels-last (faster oneDNN kernels; same numbers)


class FloatHeadSpec(Spec):
    """The CPU-only baseline: float FC layers of the IMAC head's sizes on the same features."""

    activation: str | tuple[str, ...] = "relu"  # between layers (one for all, or one per hidden layer)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("activation")
    @classmethod
    def _known(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for a in (v,) if isinstance(v, str) else v:
            if a not in ACTIVATIONS:
                raise ValueError(f"unknown activation {a!r}; known: {', '.join(ACTIVATIONS)}")
        return v


class HeadSpec(Spec):
    """The binary IMAC head: ``hidden`` sizes between the features and the classes; ``scales``
    one neuron scale per layer (V per unit of normalised pre-activation; default 0.1 V on the
    first, 0.5 V on the others); ``threshold``: features -> +-1 by ``sign`` or by a learnt
    per-feature threshold (``batchnorm``, a per-feature compare on the CPU)."""

    hidden: tuple[int, ...] = ()
    scales: tuple[float, ...] | None = None
    readout_temperature: float = Field(10.0, gt=0, le=1e4)
    threshold: Literal["sign", "batchnorm"] = "sign"
    float_head: FloatHeadSpec | None = None
    weight_noise: float = Field(0.0, ge=0.0, le=1.0)
    noise_v: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("hidden")
    @classmethod
    def _sizes(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for s in v:
            if not 1 <= s <= 1 << 20:
                raise ValueError(f"hidden sizes must be 1 to {1 << 20}, got {s}")
        return v

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and not all(0 < s <= 10 for s in v):
            raise ValueError(f"neuron scales must be in (0, 10] V, got {list(v)}")
        return v

    def layer_scales(self) -> tuple[float, ...]:
        n = len(self.hidden) + 1
        scales = self.scales if self.scales is not None else default_scales(n)
        if len(scales) != n:
            raise ConfigError(f"head: {n} layers need {n} scales, got {len(scales)}")
        return tuple(scales)


class AugmentSpec(Spec):
    """Training-time augmentation: random crop of the ``crop_pad``-padded image, horizontal
    flips, and Cutout (DeVries & Taylor 2017, arXiv:1708.04552) of ``cutout`` pixels."""

    crop_pad: int = Field(0, ge=0, le=32)
    flip: bool = False
    cutout: int = Field(0, ge=0, le=256)


class TrainSpec(Spec):
    """Adam(W) with a cosine (per epoch, lr -> lr/20) or one-cycle (per step) schedule; weight
    decay on the float weights only; label smoothing on the float head only; ``validation``
    training images held out to pick the best epoch (0: none); ``freeze``: parts kept as given
    (an imported trunk and float head are frozen by default)."""

    epochs: int = Field(10, ge=1, le=10000)
    batch_size: int = Field(128, ge=1, le=1 << 16)
    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0, le=10)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    schedule: Literal["cosine", "onecycle"] = "cosine"
    warmup: float = Field(0.15, ge=0, lt=1)
    augment: AugmentSpec = AugmentSpec()
    validation: int = Field(0, ge=0)
    freeze: tuple[Literal["trunk", "float_head"], ...] = ()


class NetworkSpec(Spec):
    """One network: see the module docstring."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    dataset: str
    input: InputSpec = InputSpec()
    trunk: tuple[Layer, ...] | Literal["imported"] = ()
    head: HeadSpec = HeadSpec()
    train: TrainSpec = TrainSpec()
    trainable: bool = True  # False: analytic studies only (no checkpoint expected)

    @field_validator("trunk", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        if v == "imported" or v is None:
            return v or ()
        if not isinstance(v, (list, tuple)):
            raise ValueError("trunk must be a list of layers (or 'imported')")
        return tuple(_parse_layer(item) for item in v)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if v not in BUILTIN_DATASETS and not re.search(r"\.ya?ml$", v):
            raise ValueError(f"dataset must be one of {', '.join(BUILTIN_DATASETS)} or a data spec file "
                             f"(.yaml), got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> NetworkSpec:
        if self.input.binarize_at is not None and self.trunk:
            raise ValueError("input.binarize_at feeds pixels straight to IMAC: it cannot have a trunk")
        self.head.layer_scales()
        return self

    @property
    def imported(self) -> bool:
        return self.trunk == "imported"


def load_network_spec(path: str | Path) -> NetworkSpec:
    """Read a network spec YAML; a relative data spec path is resolved against the file's folder."""
    path = Path(path).expanduser()
    data = read_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("dataset"), str) and data["dataset"] not in BUILTIN_DATASETS:
        ds = Path(data["dataset"]).expanduser()
        data = {**data, "dataset": str(ds if ds.is_absolute() else (path.parent / ds).resolve())}
    return parse_spec(data, NetworkSpec, str(path))


def network_from_dict(data: dict[str, Any], source: str = "<checkpoint>") -> NetworkSpec:
    return parse_spec(data, NetworkSpec, source)


def with_changes(spec: NetworkSpec, changes: dict[str, Any], source: str = "overrides") -> NetworkSpec:
    """``spec`` with dotted-path changes (e.g. ``{"head.hidden": [32]}``), validated again.  New
    hidden sizes without new scales take the default scales when the old ones no longer fit."""
    data = spec.model_dump(mode="python")
    if "head.hidden" in changes and "head.scales" not in changes and spec.head.scales is not None:
        hidden = changes["head.hidden"]
        if isinstance(hidden, (list, tuple)) and len(hidden) + 1 != len(spec.head.scales):
            changes = {**changes, "head.scales": None}
    for key, value in changes.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"{source}: no section {p!r} in {key!r}")
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"{source}: unknown key {key!r}")
        node[leaf] = value
    return parse_spec(data, NetworkSpec, source)


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return math.floor((size + 2 * padding - kernel) / stride) + 1
