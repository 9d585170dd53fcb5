"""The batch phase of a compiled network on a torch device (``--device cuda``; CPU by default).

:func:`imac.hardware.simulate.run_batch` is numpy on the CPU.  This module runs the same batch
with torch tensors on any device: the linear layers as one product each, the neuron curve
(:meth:`~imac.devices.neuron_curve.NeuronCurve.torch_forward`), and the loaded-neuron Newton
solve of :class:`~imac.hardware.simulate.LoadedSolver` with the same float32 arithmetic (on a GPU
the whole batch iterates at once; images that have converged are frozen, not dropped).  The
build (tile solves, gains, operating point) stays on the CPU; only its results are moved.

Results equal the numpy path's to the Newton tolerance (``NEWTON_TOLERANCE_V``), checked on the
CPU in the tests; the device itself is only named by the caller.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from imac.hardware.fidelity import Fidelity

if TYPE_CHECKING:
    import torch

    from imac.hardware.simulate import CompiledNetwork, LoadedSolver


def resolve_device(device: str | None) -> str | None:
    """``None`` or ``"numpy"``: the numpy path; ``"cpu"``, ``"cuda"``, ``"cuda:1"``: torch there.
    A CUDA device that is not present is refused with a clear message."""
    if device is None or device == "numpy":
        return None
    import torch

    from imac.errors import ConfigError

    try:
        with warnings.catch_warnings():  # e.g. 'mkldnn' warns of its own deprecation before it is refused
            warnings.simplefilter("ignore")
            dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        shown = device if len(device) <= 40 else device[:40] + "..."
        reason = str(err).splitlines()[0].replace(device, "the name")[:200] if str(err) else type(err).__name__
        raise ConfigError(f"unknown device {shown!r}: {reason}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device here (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA "
                          f"device(s) here (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "cpu" and dev.index not in (None, 0):
        raise ConfigError(f"device {device!r}: the CPU has no index other than 0 (use --device cpu)")
    return str(dev)


def run_batch_torch(net: CompiledNetwork, x: np.ndarray, device: str) -> list[dict[str, np.ndarray]]:
    """:func:`imac.hardware.simulate.run_batch` with torch tensors on ``device`` (results as numpy)."""
    import torch

    from imac.errors import SolverError

    dev = torch.device(device)
    v_dd = net.netmap.spec.subarray.v_dd
    curve = net.curve
    f64 = torch.float64
    v_src = torch.as_tensor(np.asarray(x, dtype=float), dtype=f64, device=dev) * v_dd
    out_t: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        for li, lm in enumerate(net.netmap.layers):
            extra: dict[str, torch.Tensor] = {}
            if net.fidelity == Fidelity.IDEAL:
                w = torch.as_tensor(lm.layer.weight, dtype=f64, device=dev)
                s = (v_src / v_dd) @ w.T
                if lm.layer.bias is not None:
                    s = s + torch.as_tensor(lm.layer.bias, dtype=f64, device=dev)
                z = lm.layer.volts_per_unit_sum * s
            elif li > 0 and net.layers[li].loaded is not None:
                ls = net.layers[li].loaded
                assert ls is not None
                z, d, v_src = _solve_loaded(ls, out_t[li - 1]["z"], out_t[li - 1]["y"])
                extra["d"] = d
                bad = ~torch.isfinite(z).all(dim=1)
                if bool(bad.any()):
                    raise SolverError(f"the loaded-neuron solve of layer {li} diverged on {int(bad.sum())} of "
                                      f"{len(z)} images (first: image {int(torch.argmax(bad.int()))})")
            else:
                cl = net.layers[li]
                z = v_src @ torch.as_tensor(cl.T, dtype=f64, device=dev).T + torch.as_tensor(cl.z0, dtype=f64,
                                                                                             device=dev)
            y = curve.torch_forward(z)
            out_t.append({"z": z, "y": y, "v_in": v_src, **extra})
            v_src = y
    return [{k: v.double().cpu().numpy() for k, v in o.items()} for o in out_t]


def _solve_loaded(ls: LoadedSolver, z_prev: torch.Tensor, y_prev: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loaded-neuron Newton solve (see ``_solve_loaded_neurons`` in simulate.py) in torch."""
    import torch

    from imac.hardware import simulate as sim

    dev = z_prev.device
    f32 = torch.float32

    def t(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=f32, device=dev)

    n = y_prev.shape[1]
    start = t(ls.start)
    s = y_prev.to(f32) @ start[:n] + start[n]
    # coefficients of I(z, V) + i_const as a polynomial in s, per image and line
    coef = t(ls.coef)
    deg1 = coef.shape[1] // 2
    fz = ((z_prev - ls.z_first) / ls.dz).to(f32).clamp(0.0, coef.shape[0] - 1e-3)
    iz = fz.long()
    fz = fz - iz
    g = coef[iz]  # (b, n, 2 deg1)
    c = g[..., :deg1] + fz[..., None] * g[..., deg1:]
    c[..., 0] += t(ls.i_const)
    cs = [c[..., k].contiguous() for k in range(deg1)]
    y_t = [t(m) for m in ls.y_t]
    y_hat, kappa, vu, v, u_t = t(ls.y_hat), t(ls.kappa), t(ls.vu), t(ls.v), t(ls.u_t)
    tol = sim.NEWTON_TOLERANCE_V / ls.v_half
    active = torch.ones(s.shape[0], dtype=torch.bool, device=dev)
    dinv = shrink = None
    last = float("inf")

    def horner(s: torch.Tensor, with_slope: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        cur = cs[-1].clone()
        slope = cs[-1].clone() if with_slope else None
        for ck in reversed(cs[1:-1]):
            cur = cur * s + ck
            if slope is not None:
                slope = slope * s + cur
        return cur * s + cs[0], slope

    for its in range(1, sim.NEWTON_MAX_ITERATIONS + 1):
        fresh = its <= sim.NEWTON_JACOBIAN_STEPS or last > sim.NEWTON_REFRESH_STEP
        cur, slope = horner(s, fresh)
        r = cur.clone()
        for (a, b), yt in zip(ls.blocks, y_t, strict=True):
            r[:, a:b] -= s[:, a:b] @ yt
        if slope is not None:
            dinv = 1.0 / (y_hat - slope.clamp(max=0.0))
            shrink = kappa / (1.0 - kappa * (dinv @ vu))
        assert dinv is not None and shrink is not None
        r = r * dinv
        r = r + ((shrink * (r @ v)) @ u_t) * dinv
        r = torch.where(active[:, None], r, torch.zeros_like(r))  # converged images stay put
        s = (s + r).clamp(-sim.NEWTON_S_LIMIT, sim.NEWTON_S_LIMIT)
        step = r.abs().amax(dim=1)
        last = float(step[active].max()) if bool(active.any()) else 0.0
        left = active & (step >= tol)
        if not bool(left.any()):
            break
        if its >= 2:  # as the numpy path: the first two steps move every image a lot
            active = left
    # the neurons' current at the solution (as the numpy path), for the source voltages d + r I
    i_line = horner(s, False)[0] - t(ls.i_const)
    z = (s @ t(ls.a_t)).double() + torch.as_tensor(ls.z_const, dtype=torch.float64, device=dev)
    d = s.double() * ls.v_half + ls.v_centre
    return z, d, d + torch.as_tensor(ls.r_line, dtype=torch.float64, device=dev) * i_line.double()
