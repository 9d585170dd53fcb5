"""Post-training int8 quantization of the CPU-side convolution trunk (simulated, "fake quant").

Why hand-rolled and not ``torch.ao.quantization``: in the installed torch (2.13) that package
prints a deprecation notice announcing its removal, and the quantized tensor types it builds on
are deprecated too; ``torchao`` is not a dependency.  The scheme below is the standard one those
libraries implement for CPUs, written out so it stays testable:

* batch norm folded into the preceding convolution;
* weights: per-tensor symmetric int8, scale = max|W| / 127, zero point 0;
* activations: per-tensor, zero point 0, calibrated on a batch of training images: symmetric int8
  (scale = max|x| / 127) or, where every calibration value is >= 0 (after ReLU), uint8
  (scale = max x / 255); quantized at the network input and after every convolution
  (re-quantization of the int32 accumulator), activation function and pooling;
* biases stay in float (int32 in a real kernel, whose rounding error is negligible).

The result is numerically what an int8 CPU kernel computes, up to the rounding of the
re-quantization multiplier.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn

_Pair = tuple[int, int]  # a Conv2d's kernel_size, stride, dilation, padding (torch types them tuple[int, ...])


def fake_quant(x: torch.Tensor, scale: float, signed: bool = True) -> torch.Tensor:
    """Round ``x`` to the int8 (signed) or uint8 grid of step ``scale`` and clamp."""
    if scale <= 0:
        return torch.zeros_like(x)
    lo, hi = (-127, 127) if signed else (0, 255)
    return torch.clamp(torch.round(x / scale), lo, hi) * scale


class ActQuant(nn.Module):
    """Per-tensor activation quantizer; in ``observing`` mode it records the range instead."""

    def __init__(self) -> None:
        super().__init__()
        self.observing = False
        self.max_abs = 0.0
        self.min_val = 0.0
        self.scale = 0.0
        self.signed = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.max_abs = max(self.max_abs, float(x.abs().max()))
            self.min_val = min(self.min_val, float(x.min()))
            return x
        return fake_quant(x, self.scale, self.signed)

    def finish(self) -> None:
        self.signed = self.min_val < 0
        self.scale = self.max_abs / (127.0 if self.signed else 255.0)
        self.observing = False

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}, {'int8' if self.signed else 'uint8'}"


def fold_batchnorm(trunk: nn.Sequential) -> nn.Sequential:
    """Copy of ``trunk`` with every Conv2d + BatchNorm2d pair merged into one Conv2d."""
    mods = list(copy.deepcopy(trunk))
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            running_mean, running_var = nxt.running_mean, nxt.running_var
            assert running_mean is not None and running_var is not None, "batch norm without running statistics"
            with torch.no_grad():
                std = torch.sqrt(running_var + nxt.eps)
                gamma = nxt.weight if nxt.affine else torch.ones_like(std)
                beta = nxt.bias if nxt.affine else torch.zeros_like(std)
                factor = gamma / std
                conv = nn.Conv2d(m.in_channels, m.out_channels, cast(_Pair, m.kernel_size), cast(_Pair, m.stride),
                                 cast("str | _Pair", m.padding), cast(_Pair, m.dilation), m.groups, bias=True)
                assert conv.bias is not None  # bias=True
                conv.weight.copy_(m.weight * factor.view(-1, 1, 1, 1))
                b0 = m.bias if m.bias is not None else torch.zeros_like(std)
                conv.bias.copy_((b0 - running_mean) * factor + beta)
            out.append(conv)
            i += 2
        else:
            out.append(m)
            i += 1
    return nn.Sequential(*out)


class Int8Trunk(nn.Module):
    """An int8-simulated copy of a float conv trunk (see the module docstring)."""

    def __init__(self, trunk: nn.Sequential) -> None:
        super().__init__()
        layers: list[nn.Module] = [ActQuant()]
        for m in fold_batchnorm(trunk):
            if isinstance(m, nn.Conv2d):
                m = copy.deepcopy(m)
                with torch.no_grad():
                    s = float(m.weight.abs().max()) / 127.0
                    m.weight.copy_(fake_quant(m.weight, s))
            layers.append(m)
            if not isinstance(m, nn.Flatten | nn.Dropout | nn.Identity | nn.MaxPool2d):
                layers.append(ActQuant())
        self.body = nn.Sequential(*layers)
        self.eval()

    def quantizers(self) -> list[ActQuant]:
        return [m for m in self.body if isinstance(m, ActQuant)]

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, batch_size: int = 256) -> Int8Trunk:
        for q in self.quantizers():
            q.observing, q.max_abs, q.min_val = True, 0.0, 0.0
        for i in range(0, x.shape[0], batch_size):
            self.body(x[i:i + batch_size])
        for q in self.quantizers():
            q.finish()
        return self

    def calibration(self) -> list[tuple[float, bool]]:
        """(scale, signed) per activation quantizer, for storing in a checkpoint."""
        return [(q.scale, q.signed) for q in self.quantizers()]

    def set_calibration(self, cal: list[tuple[float, bool]]) -> Int8Trunk:
        qs = self.quantizers()
        if len(cal) != len(qs):
            raise ValueError(f"calibration has {len(cal)} entries, trunk needs {len(qs)}")
        for q, (s, signed) in zip(qs, cal, strict=True):
            q.scale, q.signed, q.observing = float(s), bool(signed), False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
