"""Layers: forward values and gradients against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imac.devices.neuron_curve import default_neuron_curve
from imac.nn.layers import (
    BinaryLinear,
    ImacMLP,
    ImacNeuron,
    ReverseSigmoid,
    sign_ste,
    slope_matched_scale,
)


def test_sign_ste_forward_and_gradient() -> None:
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]  # sign(0) = +1: no zero state
    g = torch.arange(1.0, 8.0)
    y.backward(g)
    # straight-through where |x| <= 1, zero outside
    assert x.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]


def test_binary_linear_forward_and_grad() -> None:
    torch.manual_seed(0)
    lin = BinaryLinear(5, 3)
    with torch.no_grad():
        lin.weight.uniform_(-0.9, 0.9)
        lin.bias.copy_(torch.tensor([-0.2, 0.0, 0.7]))
    x = torch.randn(4, 5)
    u = lin(x)
    wb = torch.where(lin.weight >= 0, 1.0, -1.0)
    bb = torch.tensor([-1.0, 1.0, 1.0])
    expected = (x @ wb.T + bb) / math.sqrt(5)
    torch.testing.assert_close(u, expected)
    g = torch.randn(4, 3)
    u.backward(g)
    # STE: dL/dW = norm * g^T x (all shadow weights are inside [-1, 1])
    torch.testing.assert_close(lin.weight.grad, (g.T @ x) / math.sqrt(5))
    torch.testing.assert_close(lin.bias.grad, g.sum(0) / math.sqrt(5))


def test_binary_linear_clip_and_noise() -> None:
    lin = BinaryLinear(4, 2, weight_noise=0.2)
    with torch.no_grad():
        lin.weight.fill_(3.0)
        lin.bias.fill_(-5.0)
    lin.clip_()
    assert lin.weight.max() == 1.0 and lin.bias.min() == -1.0
    x = torch.ones(3, 4)
    lin.eval()
    torch.testing.assert_close(lin(x), torch.full((3, 2), 3.0 / 2))  # (4 - 1) / sqrt(4)
    lin.train()
    torch.manual_seed(1)
    assert not torch.allclose(lin(x), torch.full((3, 2), 1.5))


def test_reverse_sigmoid() -> None:
    z = torch.tensor([-3.0, 0.0, 2.0], requires_grad=True)
    y = ReverseSigmoid()(z)
    torch.testing.assert_close(y, 1 / (1 + torch.exp(z.detach())))
    y.sum().backward()
    torch.testing.assert_close(z.grad, -y.detach() * (1 - y.detach()))


def test_imac_neuron_matches_curve() -> None:
    curve = default_neuron_curve()
    neu = ImacNeuron(scale=0.3)
    u = torch.linspace(-3, 3, 25, dtype=torch.float64, requires_grad=True)
    y = neu(u)
    np.testing.assert_allclose(y.detach().numpy(), curve(0.3 * u.detach().numpy()) / curve.v_dd,
                               rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(u.grad.numpy(),
                               0.3 * curve.derivative(0.3 * u.detach().numpy()) / curve.v_dd,
                               rtol=1e-9)
    # decreasing, within (0, 1)
    assert (y.diff() < 0).all() and y.min() > 0 and y.max() < 1


def test_default_scale_matches_reverse_sigmoid_slope() -> None:
    neu = ImacNeuron()
    assert neu.scale == pytest.approx(slope_matched_scale())
    u = torch.zeros(1, requires_grad=True)
    neu(u).backward()
    assert float(u.grad) == pytest.approx(-0.25, rel=1e-6)


def test_neuron_noise_only_in_training_and_state_roundtrip() -> None:
    neu = ImacNeuron(scale=0.5, noise_v=0.05)
    u = torch.zeros(1000)
    neu.eval()
    assert neu(u).unique().numel() == 1
    neu.train()
    assert neu(u).std() > 0
    other = ImacNeuron(scale=0.1)
    other.load_state_dict(neu.state_dict())
    assert other.scale == 0.5 and other.noise_v == 0.05


def test_imac_mlp_layer_info_and_export() -> None:
    mlp = ImacMLP([8, 4, 3], scales=[0.2, 0.4])
    info = mlp.layer_info()
    assert [(i["fan_in"], i["fan_out"]) for i in info] == [(8, 4), (4, 3)]
    assert info[0]["volts_per_unit_sum"] == pytest.approx(0.2 / math.sqrt(8))
    (w0, b0), _ = mlp.export_binary()
    assert w0.dtype == torch.int8 and set(w0.unique().tolist()) <= {-1, 1}
    x = torch.randn(5, 8)
    # the exported integers reproduce the layer: y = curve(scale * norm * (W x + b)) / V_DD
    curve = default_neuron_curve()
    u = (x @ w0.float().T + b0.float()) / math.sqrt(8)
    y0 = torch.as_tensor(curve(0.2 * u.numpy()) / curve.v_dd, dtype=torch.float32)
    torch.testing.assert_close(mlp.forward_all(x)[0][1], y0, atol=1e-6, rtol=1e-5)
