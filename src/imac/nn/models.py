"""Networks with a binary IMAC fully-connected head, each defined by one network spec.

Every model is an :class:`ImacNet` built from a :class:`~imac.nn.netspec.NetworkSpec`: an
optional CPU-side trunk (float layers, or a program traced from a user's network), a binarizer
that turns the trunk's features into the +-1 inputs of the first IMAC layer (+-V_DD on the
hardware), and an :class:`~imac.nn.layers.ImacMLP` head of binary layers with the SOT-MRAM neuron
curve.  Models with a trunk may also carry a float FC head on the same features: the CPU-only
baseline (trained jointly, or the user's own float head for an imported network), so that
CPU-only and CPU-IMAC share one trunk and the comparison isolates the FC layers.

Read-out convention: the neuron falls with its input, so a class wins with the LOWEST last-layer
neuron output (``argmin`` of the outputs, the same as ``argmax`` of the pre-activation because the
curve is strictly decreasing).  Training uses cross-entropy on ``-T * y`` (``T`` =
``readout_temperature``), i.e. on the very voltages the hardware reads, so saturated outputs
that the hardware cannot tell apart are not rewarded.

Names: the shipped specs (``imac/networks/*.yaml``), then networks whose checkpoint in the user
cache carries its spec (trained from a user's YAML, or imported); a path to a network spec YAML
or to a checkpoint file stands for the network it defines.  See :func:`list_models`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imac.errors import ConfigError, DataError, ShapeError
from imac.nn.layers import ImacMLP, sign_ste
from imac.nn.netspec import (
    FloatHeadSpec,
    Layer,
    NetworkSpec,
    load_network_spec,
    with_changes,
)
from imac.nn.quant import Int8Trunk

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = 0.1307  # pixel mean / std of the MNIST training set (pixels scaled to 0..1)
MNIST_STD = 0.3081
NETWORKS_DIR = Path(__file__).resolve().parent.parent / "networks"


@dataclass(frozen=True)
class DataInfo:
    """What a network needs to know of its data: one stored image's shape (H, W) or (H, W, C),
    the scale to 0..1, per-channel mean and std after scaling, and the number of classes."""

    shape: tuple[int, ...]
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_classes: int

    @property
    def channels(self) -> int:
        return 1 if len(self.shape) == 2 else self.shape[2]


BUILTIN_DATA = {
    "mnist": DataInfo((28, 28), 1 / 255, (MNIST_MEAN,), (MNIST_STD,), 10),
    "cifar10": DataInfo((32, 32, 3), 1 / 255, CIFAR10_MEAN, CIFAR10_STD, 10),
}


def data_info(dataset: str) -> DataInfo:
    """The :class:`DataInfo` of a built-in data set or of a user's data spec file."""
    if dataset in BUILTIN_DATA:
        return BUILTIN_DATA[dataset]
    from imac.nn.userdata import load_data_spec

    ds = load_data_spec(dataset)
    shape = tuple(int(v) for v in ds.input_shape)
    if len(shape) not in (2, 3):
        raise ConfigError(f"{dataset}: a network takes images of shape [H, W] or [H, W, C], not {list(shape)}")
    c = 1 if len(shape) == 2 else shape[2]

    def per_channel(v: Any, default: float) -> tuple[float, ...]:
        v = default if v is None else v
        return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else (float(v),) * c

    return DataInfo(shape, float(ds.scale), per_channel(ds.mean, 0.0), per_channel(ds.std, 1.0), ds.n_classes())


_ACT = {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "hardtanh": nn.Hardtanh,
        "gelu": nn.GELU, "silu": nn.SiLU}


def _activation(kind: str, slope: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(slope) if kind == "leaky_relu" else _ACT[kind]()


def build_trunk(layers: tuple[Layer, ...], in_shape: tuple[int, ...]) -> tuple[nn.Sequential, tuple[int, ...]]:
    """The trunk's modules for inputs of ``in_shape`` (C, H, W) and the shape of its output (one
    sample); errors name the layer (``trunk[i]``) whose input does not fit."""
    mods: list[nn.Module] = []
    shape = tuple(in_shape)
    for i, layer in enumerate(layers):
        a = layer.params
        where = f"trunk[{i}] ({layer.kind})"
        if layer.kind == "conv":
            if len(shape) != 3:
                raise ConfigError(f"{where}: a convolution needs (C, H, W) inputs, gets {shape}")
            if shape[0] % a.groups or a.out % a.groups:
                raise ConfigError(f"{where}: groups={a.groups} must divide {shape[0]} inputs and {a.out} outputs")
            m: nn.Module = nn.Conv2d(shape[0], a.out, a.kernel, a.stride, a.padding, groups=a.groups, bias=a.bias)
        elif layer.kind == "linear":
            if len(shape) != 1:
                raise ConfigError(f"{where}: a linear layer needs flat (F,) inputs, gets {shape}: add flatten")
            m = nn.Linear(shape[0], a.out, bias=a.bias)
        elif layer.kind == "batchnorm":
            m = nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
        elif layer.kind in ("maxpool", "avgpool"):
            if len(shape) != 3:
                raise ConfigError(f"{where}: pooling needs (C, H, W) inputs, gets {shape}")
            cls = nn.MaxPool2d if layer.kind == "maxpool" else nn.AvgPool2d
            m = cls(a.kernel, a.stride)
        elif layer.kind == "flatten":
            m = nn.Flatten()
        elif layer.kind == "dropout":
            m = nn.Dropout(a.p)
        else:
            m = _activation(layer.kind, getattr(a, "slope", 0.01))
        with torch.no_grad():
            try:
                y = m.eval()(torch.zeros((2, *shape)))
            except RuntimeError as err:
                raise ConfigError(f"{where}: does not fit inputs of shape {shape}: "
                                  f"{str(err).splitlines()[0][:200]}") from None
        if y.numel() == 0:
            raise ConfigError(f"{where}: its output is empty for inputs of shape {shape}")
        shape = tuple(y.shape[1:])
        mods.append(m.train())
    return nn.Sequential(*mods), shape


def float_mlp(sizes: list[int], activation: str | tuple[str, ...], dropout: float = 0.0) -> nn.Sequential:
    """Float FC layers ``sizes`` with an activation (one for all, or one per hidden layer)
    between them and no activation after the last (logits)."""
    n_hidden = len(sizes) - 2
    acts = (activation,) * n_hidden if isinstance(activation, str) else tuple(activation)
    if len(acts) != n_hidden:
        raise ConfigError(f"float_head: {n_hidden} hidden layers need {n_hidden} activations, got {len(acts)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < n_hidden:
            layers.append(_activation(acts[i]))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ImportedTrunk(nn.Module):
    """An imported network's trunk, its traced program: run on the network input reshaped to the
    shape it was traced with, its output flattened to (N, F) features, and kept in inference mode
    (an exported program has no training mode; ``--finetune-trunk`` still trains its parameters)."""

    def __init__(self, program: Any, input_shape: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        self.inner = program  # a module (registered: its parameters train) or a batch-1 callable
        self.input_shape = tuple(int(d) for d in input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)
        if isinstance(self.inner, nn.Module):
            y = self.inner(x)
        else:  # a fixed-batch program (not a module: `.to(device)` leaves it on the CPU): run it there
            y = self.inner(x.cpu()).to(x.device)
        return y.reshape(y.shape[0], -1)

    def train(self, mode: bool = True) -> ImportedTrunk:
        self.training = mode  # the wrapped program stays as exported
        return self


def retarget_trunk(trunk: ImportedTrunk, program: Any, device: torch.device) -> ImportedTrunk:
    """``trunk`` rebuilt from its exported ``program`` with every device written into the graph
    set to ``device`` (``torch.export.passes.move_to_device_pass``), with the trunk's current
    weights (fine-tuned or not), their ``requires_grad`` and its mode."""
    import copy

    from torch.export.passes import move_to_device_pass

    from imac.nn.convert import trunk_from_program

    # a copy: the pass rewrites the program in place, and the CPU workload is read from it
    moved = trunk_from_program(move_to_device_pass(copy.deepcopy(program), device), trunk.input_shape)
    moved.load_state_dict(trunk.state_dict())
    grads = {n: q.requires_grad for n, q in trunk.named_parameters()}
    for n, q in moved.named_parameters():
        q.requires_grad_(grads.get(n, q.requires_grad))
    return moved.train(trunk.training)


class ImacNet(nn.Module):
    """A network built from its :class:`~imac.nn.netspec.NetworkSpec` (see the module docstring).

    ``trunk``: the :class:`ImportedTrunk` of an imported network (``spec.trunk == "imported"``)."""

    mean: torch.Tensor  # buffers (registered in __init__), (1, C, 1, 1)
    std: torch.Tensor

    def __init__(self, spec: NetworkSpec, trunk: nn.Module | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.dataset = spec.dataset
        info = data_info(spec.dataset)
        self.info = info
        self.input_shape = info.shape  # of the stored images this model takes
        self.readout_temperature = float(spec.head.readout_temperature)
        h, w = info.shape[:2]
        pad = spec.input.pad
        in_shape = (info.channels, h + 2 * pad, w + 2 * pad)
        self.trunk: nn.Module | None = None
        self.trunk_program: Any = None  # the exported program of an imported trunk (its CPU workload)
        if spec.input.binarize_at is not None:
            features = math.prod(info.shape)
        elif spec.imported:
            if trunk is None:
                raise ConfigError(f"network {spec.name}: an imported trunk must come with its program")
            self.trunk = trunk
            with torch.no_grad():
                features = int(self.trunk(torch.zeros((2, *in_shape))).shape[1])
        elif spec.trunk:
            seq, out = build_trunk(spec.trunk, in_shape)  # type: ignore[arg-type]
            if len(out) != 1:
                raise ConfigError(f"network {spec.name}: the trunk ends in shape {out}, not flat features: "
                                  "end it with flatten")
            self.trunk, features = seq, out[0]
        else:
            features = math.prod(in_shape)  # no trunk: the (standardised) pixels, signed
        sizes = [features, *spec.head.hidden, info.n_classes]
        self.head = ImacMLP(sizes, list(spec.head.layer_scales()), weight_noise=spec.head.weight_noise,
                            noise_v=spec.head.noise_v)
        self.threshold = nn.BatchNorm1d(features) if spec.head.threshold == "batchnorm" else None
        fh: FloatHeadSpec | None = spec.head.float_head
        self.float_head = float_mlp(sizes, fh.activation, fh.dropout) if fh is not None else None
        c = info.channels
        self.register_buffer("mean", torch.tensor(info.mean, dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std, dtype=torch.float32).view(1, c, 1, 1), persistent=False)

    # -- input -------------------------------------------------------------------------------
    def _check_images(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if tuple(t.shape[1:]) != self.input_shape:
            raise ShapeError(f"{self.name} takes images of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(t.shape)}")
        return t.to(self.device).float()

    @property
    def device(self) -> torch.device:
        """Where the network's parameters are (:meth:`to_device` moves them)."""
        return self.mean.device

    def to_device(self, device: str | torch.device) -> ImacNet:
        """``self.to(device)``, with an imported trunk re-targeted as well: its traced program has
        the device it was exported on written into some operations (tensors made in ``forward``,
        the dtype/device checks of ``x.float()``), which ``.to()`` leaves as they are.  The trunk's
        current weights and their ``requires_grad`` are kept; a fixed-batch program (not a module)
        stays on the CPU, where :class:`ImportedTrunk` runs it."""
        dev = torch.device(device)
        if (isinstance(self.trunk, ImportedTrunk) and isinstance(self.trunk.inner, nn.Module)
                and self.trunk_program is not None and dev != self.device):
            self.trunk = retarget_trunk(self.trunk, self.trunk_program, dev)
        return self.to(dev)

    def prepare(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images as stored (uint8 or float) -> the float network input (N, C, H, W), or the
        flat +-1 pixels of a network without trunk that binarizes its input; on the network's
        device (the images travel as stored, before the conversion to float)."""
        t = self._check_images(images)
        if self.spec.input.binarize_at is not None:
            return torch.where(t >= self.spec.input.binarize_at, 1.0, -1.0).reshape(t.shape[0], -1)
        t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
        t = t * self.info.scale
        pad = self.spec.input.pad
        if pad:
            t = nn.functional.pad(t, (pad, pad, pad, pad))
        if self.spec.input.normalize:
            t = (t - self.mean) / self.std
        return t.contiguous()

    def augment(self, x: torch.Tensor, cutout: int | None = None) -> torch.Tensor:
        """Training-time augmentation of a prepared batch (see :class:`~imac.nn.netspec.AugmentSpec`)."""
        aug = self.spec.train.augment
        cutout = aug.cutout if cutout is None else cutout
        if x.ndim != 4 or not (aug.crop_pad or aug.flip or cutout):
            return x
        n, _, h, w = x.shape
        if aug.crop_pad:
            p = aug.crop_pad
            padded = nn.functional.pad(x, (p, p, p, p))
            dx = torch.randint(0, 2 * p + 1, (n,)).tolist()  # CPU draws: the same crops on every device
            dy = torch.randint(0, 2 * p + 1, (n,)).tolist()
            x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
        if aug.flip:
            flip = (torch.rand(n) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)  # no data-dependent indexing: one kernel on any device
        if cutout > 0:
            cy = torch.randint(0, h, (n, 1, 1))
            cx = torch.randint(0, w, (n, 1, 1))
            dy_ = torch.arange(h).view(1, h, 1) - cy + cutout // 2  # 0..cutout-1 inside the square
            dx_ = torch.arange(w).view(1, 1, w) - cx + cutout // 2
            inside = ((dy_ >= 0) & (dy_ < cutout)) & ((dx_ >= 0) & (dx_ < cutout))
            x = x * ~inside.unsqueeze(1).to(x.device)
        return x

    # -- forward -----------------------------------------------------------------------------
    def features(self, x: torch.Tensor, trunk: nn.Module | None = None) -> torch.Tensor:
        """CPU-side features (float); ``trunk`` overrides the float trunk (e.g. int8)."""
        trunk = trunk if trunk is not None else self.trunk
        if trunk is None:
            return x.reshape(x.shape[0], -1)
        if self.spec.input.channels_last and x.ndim == 4:
            # channels-last activations: the CPU (oneDNN) convolutions run ~1.3x faster (measured,
            # VGG-11 at 1/4 width, 1 thread); the numbers are the same, only the layout differs
            x = x.contiguous(memory_format=torch.channels_last)
        return trunk(x)

    def binarize(self, f: torch.Tensor) -> torch.Tensor:
        """Features -> first IMAC layer inputs in {-1, +1} (straight-through)."""
        if self.spec.input.binarize_at is not None:
            return f  # already +-1
        return sign_ste(self.threshold(f) if self.threshold is not None else f)

    def imac_input(self, x: torch.Tensor, trunk: nn.Module | None = None) -> torch.Tensor:
        return self.binarize(self.features(x, trunk))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Last IMAC layer neuron outputs, 0..1 (fraction of V_DD); lowest = predicted class."""
        return self.head(self.imac_input(x))

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        """Class scores from neuron outputs: ``-T * y`` (low voltage = high score)."""
        return -self.readout_temperature * y

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.argmin(self.forward(x), dim=1)

    def loss(self, x: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss and the IMAC-head class scores of the batch.

        ``label_smoothing`` applies to the float head's cross-entropy only: the IMAC read-out
        is already bounded (``-T * y`` with y in 0..1), so it cannot grow over-confident.  A
        frozen float head adds nothing."""
        f = self.features(x)
        scores = self.logits(self.head(self.binarize(f)))
        loss = nn.functional.cross_entropy(scores, y)
        if self.float_head is not None and "float_head" not in self.spec.train.freeze:
            loss = loss + nn.functional.cross_entropy(self.float_head(f), y, label_smoothing=label_smoothing)
        return loss, scores

    def train(self, mode: bool = True) -> ImacNet:
        """Training mode, except for the frozen parts (their batch norms keep their statistics)."""
        super().train(mode)
        for part in self.spec.train.freeze:
            sub = getattr(self, part, None)
            if sub is not None:
                sub.eval()
        return self

    def freeze_(self) -> None:
        """No gradients for the parts the spec freezes."""
        for part in self.spec.train.freeze:
            sub = getattr(self, part, None)
            if sub is not None:
                sub.requires_grad_(False)

    @torch.no_grad()
    def predict_variants(self, x: torch.Tensor,
                         int8_trunk: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Predicted classes of every variant that applies: ``accuracy`` (CPU-IMAC, float
        trunk), ``accuracy_int8`` (CPU-IMAC, int8 trunk), ``accuracy_float`` (CPU-only float
        network), ``accuracy_float_int8`` (CPU-only, int8 trunk, float head)."""
        out = {}
        f = self.features(x)
        out["accuracy"] = torch.argmin(self.head(self.binarize(f)), dim=1)
        if self.float_head is not None:
            out["accuracy_float"] = torch.argmax(self.float_head(f), dim=1)
        if int8_trunk is not None:
            fq = self.features(x, int8_trunk)
            out["accuracy_int8"] = torch.argmin(self.head(self.binarize(fq)), dim=1)
            if self.float_head is not None:
                out["accuracy_float_int8"] = torch.argmax(self.float_head(fq), dim=1)
        return out

    def int8_trunk(self) -> Int8Trunk | None:
        """An uncalibrated int8 copy of the trunk (None without a trunk of declared layers)."""
        return Int8Trunk(self.trunk) if isinstance(self.trunk, nn.Sequential) else None

    # -- training hooks ----------------------------------------------------------------------
    def clip_(self) -> None:
        """BinaryConnect clip of every binary layer's shadow weights; call after each step."""
        self.head.clip_()

    # -- hardware mapping --------------------------------------------------------------------
    def fc_layer_sizes(self) -> list[int]:
        """Sizes of the binary IMAC MLP, e.g. [400, 120, 84, 10]."""
        return list(self.head.sizes)

    def layer_scales(self) -> list[float]:
        """Neuron scale per IMAC layer, V per unit of normalised pre-activation."""
        return [n.scale for n in self.head.imac_neurons()]

    def layer_norms(self) -> list[float]:
        """Pre-activation normalisation per IMAC layer (u = norm * raw sum)."""
        return [lin.norm for lin in self.head.binary_linears()]

    def imac_layers(self) -> list[dict[str, Any]]:
        return self.head.layer_info()


# -- registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A named network: its spec, and where it was defined (a shipped file, a user's YAML, or a
    checkpoint that carries it)."""

    spec: NetworkSpec
    source: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def dataset(self) -> str:
        return self.spec.dataset

    @property
    def trainable_here(self) -> bool:
        return self.spec.trainable

    def build(self, changes: dict[str, Any] | None = None, trunk: nn.Module | None = None) -> ImacNet:
        """The network, untrained; ``changes``: dotted spec changes such as ``{"head.hidden": [32]}``."""
        spec = with_changes(self.spec, changes, f"changes to {self.name}") if changes else self.spec
        return ImacNet(spec, trunk)


@functools.cache
def shipped_models() -> dict[str, ModelSpec]:
    """The networks defined by the package's own spec files."""
    out: dict[str, ModelSpec] = {}
    for path in sorted(NETWORKS_DIR.glob("*.yaml")):
        spec = load_network_spec(path)
        if spec.name != path.stem:
            raise ConfigError(f"{path}: the file name must be the network's name ({spec.name})")
        out[spec.name] = ModelSpec(spec, str(path))
    return out


# networks named on the command line by a path (a spec YAML or a checkpoint) in this process
_SESSION: dict[str, ModelSpec] = {}
_EXPLICIT_CHECKPOINTS: dict[str, Path] = {}


def looks_like_path(arg: str) -> bool:
    return arg.endswith((".yaml", ".yml", ".pt")) or "/" in arg


def resolve_name(arg: str) -> str:
    """The network name ``arg`` stands for: a name as it is; a network spec YAML or a checkpoint
    file is read (once per process) and its network registered under its own name, the
    checkpoint remembered as that network's (so every later look-up by name finds it)."""
    if not isinstance(arg, str) or not looks_like_path(arg):
        return arg
    path = Path(arg).expanduser()
    if not path.is_file():
        raise ConfigError(f"{arg}: no such network spec or checkpoint file")
    if path.suffix in (".yaml", ".yml"):
        spec = load_network_spec(path)
        _register_session(ModelSpec(spec, str(path)))
        return spec.name
    from imac.nn.checkpoint import load_checkpoint, network_spec_of

    payload = load_checkpoint(path)
    spec = network_spec_of(payload, path)
    _register_session(ModelSpec(spec, str(path)))
    _EXPLICIT_CHECKPOINTS[spec.name] = path.resolve()
    return spec.name


def _register_session(ms: ModelSpec) -> None:
    known = shipped_models().get(ms.name) or _SESSION.get(ms.name)
    if known is not None and known.spec != ms.spec:
        raise ConfigError(f"{ms.source} defines network {ms.name!r}, already defined differently by {known.source}; "
                          "give it another name")
    _SESSION.setdefault(ms.name, ms)


def check_against_named_spec(spec: NetworkSpec, path: str | Path) -> None:
    """A checkpoint of a network that was named on the command line by its spec YAML must have
    been trained from that spec (up to the description): otherwise the YAML was edited since."""
    named = _SESSION.get(spec.name)
    if named is None or not named.source.endswith((".yaml", ".yml")):
        return
    a, b = named.spec.model_dump(mode="json"), spec.model_dump(mode="json")
    changed = [k for k in a if k != "description" and a[k] != b.get(k)]
    if changed:
        raise DataError(f"{path} was trained from another version of {named.source} (differs in: "
                        f"{', '.join(changed)}); retrain it with `imac train {named.source} --overwrite`")


def explicit_checkpoint(name: str) -> Path | None:
    """The checkpoint file a network was named by on the command line, if it was."""
    return _EXPLICIT_CHECKPOINTS.get(name)


def get_spec(name: str) -> ModelSpec:
    """The network ``name`` (or a spec / checkpoint path; see :func:`resolve_name`)."""
    name = resolve_name(name)
    found = shipped_models().get(name) or _SESSION.get(name)
    if found is not None:
        return found
    user = _user_network(name)
    if user is not None:
        return user
    known = sorted({*shipped_models(), *_SESSION, *(m.name for m in user_models())})
    raise ConfigError(f"unknown model {name!r}; known models: {', '.join(known)} (or give a network spec .yaml "
                      "or a checkpoint .pt)")


def _user_network(name: str) -> ModelSpec | None:
    """A network whose checkpoint in the user cache carries its spec (trained or imported)."""
    from imac.nn.checkpoint import NAME_SAFE, default_checkpoint_path, load_checkpoint, network_spec_of

    if not NAME_SAFE.match(name):
        return None
    path = default_checkpoint_path(name)
    if not path.is_file():
        return None
    try:
        payload = load_checkpoint(path)
        spec = network_spec_of(payload, path)
    except (DataError, ConfigError):
        return None
    if spec.name != name:
        return None
    return ModelSpec(spec, str(path))


def user_models() -> list[ModelSpec]:
    """Networks trained or imported by the user (checkpoints carrying a spec in the user cache)."""
    from imac.nn.checkpoint import default_checkpoint_path

    folder = default_checkpoint_path("x").parent
    out = []
    for p in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        if p.stem in shipped_models():
            continue
        ms = _user_network(p.stem)
        if ms is not None:
            out.append(ms)
    return out


def build_model(name: str, changes: dict[str, Any] | None = None) -> ImacNet:
    """Build the network ``name`` (untrained; dotted spec changes such as ``{"head.hidden": [32]}``)."""
    ms = get_spec(name)
    if ms.spec.imported:
        raise ConfigError(f"{ms.name} has an imported trunk: load it from its checkpoint "
                          "(imac.hardware.network.load_model)")
    return ms.build(changes)


def list_models() -> list[ModelSpec]:
    """The shipped networks, then the user's (sorted by name)."""
    shipped = shipped_models()
    return [shipped[k] for k in sorted(shipped)] + user_models()


# -- checkpoints written before network specs ---------------------------------------------------
# builder keyword arguments of the former model classes -> the spec fields they set
_LEGACY_KEYS = {"hidden": "head.hidden", "fc_hidden": "head.hidden", "scales": "head.scales",
                "normalize": "input.normalize", "readout_temperature": "head.readout_temperature",
                "weight_noise": "head.weight_noise", "noise_v": "head.noise_v"}


def legacy_spec(name: str, config: dict[str, Any]) -> NetworkSpec:
    """The spec of a checkpoint written before network specs (its ``config`` held the builder's
    keyword arguments): the shipped spec of ``name`` with those arguments applied; arguments
    that changed the architecture otherwise (VGG arch and width) must equal the spec's."""
    base = get_spec(name).spec
    changes: dict[str, Any] = {}
    for key, value in config.items():
        if key in _LEGACY_KEYS:
            changes[_LEGACY_KEYS[key]] = value
        elif key == "float_head":
            if not value:
                changes["head.float_head"] = None
        elif key in ("arch", "width", "dropout"):
            pass  # checked below by the architecture the spec builds
        else:
            raise DataError(f"checkpoint of {name}: unknown legacy config entry {key!r}")
    spec = with_changes(base, changes, f"legacy config of {name}") if changes else base
    arch = _vgg_signature(spec)
    if "arch" in config and arch is not None and (config["arch"], float(config.get("width", 1.0))) != arch:
        raise DataError(f"checkpoint of {name} was written for {config['arch']} x{config.get('width')}, not for "
                        f"the shipped spec ({arch[0]} x{arch[1]}); retrain it with `imac train {name}`")
    return spec


def _vgg_signature(spec: NetworkSpec) -> tuple[str, float] | None:
    """(arch, width) of a VGG-style spec, from its description's convention in the shipped files."""
    meta = {"vgg11-cifar10": ("vgg11", 0.5), "vgg11-full-cifar10": ("vgg11", 1.0),
            "vgg13-full-cifar10": ("vgg13", 1.0), "vgg16-full-cifar10": ("vgg16", 1.0)}
    return meta.get(spec.name)
