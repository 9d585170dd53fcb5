"""Layers of the IMAC part of a network: binary synapses and the SOT-MRAM sigmoid neuron.

One IMAC layer is ``BinaryLinear`` followed by ``ImacNeuron``.  Quantities, with inputs in
units of V_DD (first layer: +-1 = +-V_DD; hidden layers: neuron outputs 0..1 = 0..V_DD):

* raw sum     ``s_i = sum_j sign(W_ij) x_j + sign(b_i)``   (what the differential pair lines
  compute, up to the circuit's own scale);
* pre-activation ``u_i = norm * s_i`` with ``norm = 1/sqrt(fan_in)`` by default
  (:data:`DEFAULT_NORM` rule), dimensionless, ~N(0, 1) for random +-1 inputs and weights;
* neuron input ``v_i = scale * u_i`` in volts (``scale`` in V per unit of u, a fixed per-layer
  constant; the hardware realises ``scale * norm`` volts per unit of raw sum with the difference
  amplifier gains);
* output ``y_i = curve(v_i) / V_DD`` in 0..1, ``curve`` the fitted neuron transfer curve.

Default ``scale`` (:data:`DEFAULT_SCALE_V`): the value that gives the neuron curve the same slope
at 0 as the authors' reverse sigmoid 1/(1+e^u), i.e. ``scale * |curve'(0)| / V_DD = 1/4``.  For the
default curve (slope -1.16 V/V at 0, V_DD 0.8 V) that is 0.172 V.  Models may choose a larger
scale per layer (a steeper neuron); see :mod:`imac.nn.models`.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, cast

import torch
from torch import nn

from imac.devices.neuron_curve import NeuronCurve, default_neuron_curve

REVERSE_SIGMOID_SLOPE = 0.25  # |d/du 1/(1+e^u)| at u = 0


def default_norm(fan_in: int) -> float:
    """Pre-activation normalisation 1/sqrt(fan_in): keeps u ~ N(0, 1) at initialisation for
    +-1 inputs, so one neuron scale suits layers of every width."""
    return 1.0 / math.sqrt(fan_in)


def slope_matched_scale(curve: NeuronCurve | None = None) -> float:
    """Scale (V per unit of u) at which curve(scale*u)/V_DD has the reverse sigmoid's slope 1/4
    at u = 0."""
    curve = curve or default_neuron_curve()
    slope = abs(float(curve.derivative(0.0))) / curve.v_dd
    return REVERSE_SIGMOID_SLOPE / slope


class SignSTE(torch.autograd.Function):
    """sign() with sign(0) = +1 forward; straight-through gradient where |x| <= 1.

    The +1 at zero keeps every binary value in {-1, +1}: a synapse pair has no zero state.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Binarize to {-1, +1} with a straight-through gradient (see :class:`SignSTE`)."""
    return SignSTE.apply(x)


class BinaryLinear(nn.Module):
    """BinaryConnect linear layer: real shadow weights in [-1, 1], sign() in the forward pass.

    Output is the pre-activation ``u = norm * (x @ sign(W).T + sign(b))`` (dimensionless).
    ``weight_noise`` (relative std) multiplies each binary weight by (1 + N(0, weight_noise^2))
    during training only, a stand-in for synapse conductance variation.
    Call :meth:`clip_` after every optimiser step (the training loop does).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 norm: float | None = None, weight_noise: float = 0.0) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError("BinaryLinear needs positive in/out features")
        self.in_features = in_features
        self.out_features = out_features
        self.norm = float(norm) if norm is not None else default_norm(in_features)
        self.weight_noise = float(weight_noise)
        # small shadow weights: sign flips early in training stay cheap for the optimiser
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = (nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
                     if bias else None)

    def binary_weight(self) -> torch.Tensor:
        return sign_ste(self.weight)

    def binary_bias(self) -> torch.Tensor | None:
        return sign_ste(self.bias) if self.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.binary_weight()
        b = self.binary_bias()
        if self.training and self.weight_noise > 0:
            w = w * (1 + self.weight_noise * torch.randn_like(w))
            if b is not None:
                b = b * (1 + self.weight_noise * torch.randn_like(b))
        return self.norm * nn.functional.linear(x, w, b)

    @torch.no_grad()
    def clip_(self) -> None:
        """Keep the shadow weights in [-1, 1] (BinaryConnect)."""
        self.weight.clamp_(-1.0, 1.0)
        if self.bias is not None:
            self.bias.clamp_(-1.0, 1.0)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
                f"norm={self.norm:.4g}, weight_noise={self.weight_noise}")


class ReverseSigmoid(nn.Module):
    """The authors' training activation 1/(1 + e^z) (a falling sigmoid)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-z)


class ImacNeuron(nn.Module):
    """The SOT-MRAM neuron as an activation: ``y = curve(scale * u) / V_DD`` in 0..1.

    ``scale`` (V per unit of pre-activation) is a fixed constant, not trained.  ``noise_v``
    adds N(0, noise_v^2) volts to the neuron input during training (amplifier offset, device
    variation).  The curve and scale travel in the state dict (extra state), so a checkpoint
    re-creates exactly the activation it was trained with.
    """

    def __init__(self, scale: float | None = None, curve: NeuronCurve | None = None,
                 noise_v: float = 0.0) -> None:
        super().__init__()
        self.curve = curve if curve is not None else default_neuron_curve()
        self.scale = float(scale) if scale is not None else slope_matched_scale(self.curve)
        if not self.scale > 0:
            raise ValueError(f"neuron scale must be positive, got {self.scale}")
        self.noise_v = float(noise_v)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        v = self.scale * u
        if self.training and self.noise_v > 0:
            v = v + self.noise_v * torch.randn_like(v)
        return self.curve.torch_forward(v) / self.curve.v_dd

    def get_extra_state(self) -> dict[str, Any]:
        return {"scale": self.scale, "noise_v": self.noise_v, "curve": self.curve.to_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.noise_v = float(state.get("noise_v", 0.0))
        self.curve = NeuronCurve.from_dict(state["curve"])

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g} V, noise_v={self.noise_v}"


class ImacMLP(nn.Module):
    """A stack of IMAC layers (BinaryLinear + ImacNeuron): the part that runs on IMAC.

    ``sizes`` = [fan_in of layer 1, ..., number of outputs]; ``scales`` one per layer (V per
    unit of pre-activation; None = slope-matched default).
    """

    def __init__(self, sizes: list[int], scales: list[float] | None = None,
                 weight_noise: float = 0.0, noise_v: float = 0.0) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError("an IMAC MLP needs at least one layer (two sizes)")
        n = len(sizes) - 1
        scales = list(scales) if scales is not None else [slope_matched_scale()] * n
        if len(scales) != n:
            raise ValueError(f"{n} layers need {n} scales, got {len(scales)}")
        self.sizes = list(sizes)
        self.linears = nn.ModuleList(
            BinaryLinear(a, b, weight_noise=weight_noise) for a, b in pairwise(sizes))
        self.neurons = nn.ModuleList(ImacNeuron(s, noise_v=noise_v) for s in scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[-1][1]

    def forward_all(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pre-activation u, output y) of every layer."""
        out = []
        for lin, neu in zip(self.linears, self.neurons, strict=True):
            u = lin(x)
            x = neu(u)
            out.append((u, x))
        return out

    def binary_linears(self) -> list[BinaryLinear]:
        """The :class:`BinaryLinear` of every layer, typed (a ModuleList iterates as plain modules)."""
        return [cast(BinaryLinear, m) for m in self.linears]

    def imac_neurons(self) -> list[ImacNeuron]:
        """The :class:`ImacNeuron` of every layer, typed."""
        return [cast(ImacNeuron, m) for m in self.neurons]

    def clip_(self) -> None:
        for lin in self.binary_linears():
            lin.clip_()

    def layer_info(self) -> list[dict[str, Any]]:
        """Per layer: fan_in, fan_out, norm, scale (V/unit u) and volts per unit raw sum."""
        return [{"fan_in": lin.in_features, "fan_out": lin.out_features, "norm": lin.norm,
                 "scale_v": neu.scale, "volts_per_unit_sum": neu.scale * lin.norm}
                for lin, neu in zip(self.binary_linears(), self.imac_neurons(), strict=True)]

    @torch.no_grad()
    def export_binary(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(sign(W) as int8 (fan_out, fan_in), sign(b) as int8 or None) per layer."""
        out = []
        for lin in self.binary_linears():
            w = lin.binary_weight().to(torch.int8)
            b = lin.binary_bias()
            out.append((w, b.to(torch.int8) if b is not None else None))
        return out
