"""Hardware-aware forward of a binary FC layer: the behavioural circuit, differentiable.

Without wires and with ideal drivers every tile column has a closed form (see
:func:`imac.circuit.solve.ideal_outputs`): with the published loaded difference amplifier,

    a_i = g [ (1 - c/D-) g+_i / D+  -  g-_i / D- ],   D+ = G+ + 1/(r (1+g)),  D- = G- + 1/r,
    c = g / ((1+g) r),  G+- = sum_i g+-_i,

and a_i = g (g+_i/G+ - g-_i/G-) with the instrumentation amplifier.  The effective weight a_i
depends on the whole column through G+ and G-: a column with more +1 than -1 weighs its -1
inputs more (and vice versa), which acts like a common-mode error on hidden layers whose
inputs are all positive.  Training through this forward (:func:`finetune_hardware_aware`)
lets the binary weights absorb the effect, which a plain software forward cannot see.

The device conductances are linear in the binary weight w: g+ = m + d w, g- = m - d w with
m = (g_L + g_H)/2, d = (g_L - g_H)/2, so the straight-through gradient flows through them.
The gains follow the derivation of :mod:`imac.hardware.mapping` (mean a_i w_i = target per
tile column), so this forward equals the ``behavioral`` fidelity of :mod:`.simulate` for
variation-free devices (checked in the tests).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from imac.config import ImacSpec
from imac.hardware.mapping import nominal_levels, partition_counts
from imac.hardware.simulate import GAIN_ITERATIONS, GAIN_TOLERANCE  # the circuit's own fixed point


def row_groups(fan_in: int, rows: int | None) -> list[np.ndarray]:
    """Input-line groups of the horizontal partitions (index fan_in = the bias line)."""
    hpar = 1 if rows is None else partition_counts(fan_in, 1, rows, 1)[0]
    return np.array_split(np.arange(fan_in + 1), hpar)


class AwareLinear(nn.Module):
    """Behavioural-circuit forward of one BinaryLinear + its tiles; returns volts at the neuron.

    ``lin`` is the trained layer (its shadow weights are shared, not copied).  Inputs x are
    in units of V_DD (first layer +-1, hidden layers 0..1).
    """

    def __init__(self, lin: Any, volts_per_unit_sum: float, spec: ImacSpec, rows: int | None) -> None:
        super().__init__()
        self.lin = lin
        self.target = volts_per_unit_sum / spec.subarray.v_dd
        self.v_dd = spec.subarray.v_dd
        g_lo_r, g_hi_r = nominal_levels(spec)  # conductance of the low-R and high-R state
        self.m = 0.5 * (g_lo_r + g_hi_r)
        self.d = 0.5 * (g_lo_r - g_hi_r)
        self.r = spec.amplifier.r_in_ohm
        self.topology = spec.amplifier.topology
        self.groups = [torch.as_tensor(g) for g in row_groups(lin.in_features, rows)]

    def _column_coeffs(self, w: torch.Tensor) -> torch.Tensor:
        """Effective coefficients a (fan_out, n) of one tile's rows, gains derived."""
        gp = self.m + self.d * w
        gm = self.m - self.d * w
        Gp = gp.sum(1, keepdim=True)
        Gm = gm.sum(1, keepdim=True)
        if self.topology == "instrumentation":
            h = gp / Gp - gm / Gm
        else:
            g = torch.ones_like(Gp)
            with torch.no_grad():  # the gain enters the loads only weakly: fixed point
                for _ in range(GAIN_ITERATIONS):
                    h0 = self._diff_amp(gp, gm, Gp, Gm, g)
                    ratio = self.target / (h0 * w).mean(1, keepdim=True)
                    g = g * ratio
                    if float((ratio - 1).abs().max()) < GAIN_TOLERANCE:
                        break
            h = self._diff_amp(gp, gm, Gp, Gm, g)
        return self.target * h / (h * w).mean(1, keepdim=True)

    def _diff_amp(self, gp: torch.Tensor, gm: torch.Tensor, Gp: torch.Tensor, Gm: torch.Tensor,
                  g: torch.Tensor) -> torch.Tensor:
        dp = Gp + 1.0 / (self.r * (1.0 + g))
        dm = Gm + 1.0 / self.r
        c = g / ((1.0 + g) * self.r)
        return g * ((1.0 - c / dm) * gp / dp - gm / dm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.lin.binary_weight()
        b = self.lin.binary_bias()
        if b is None:  # the mapping alternates +1/-1 on an unused bias line
            b = torch.where(torch.arange(w.shape[0]) % 2 == 1, -1.0, 1.0).to(w)
        w_full = torch.cat([w, b[:, None]], dim=1)
        x_full = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1) * self.v_dd
        z = x.new_zeros(x.shape[0], w.shape[0])
        for idx in self.groups:
            a = self._column_coeffs(w_full[:, idx])
            z = z + x_full[:, idx] @ a.T
        return z


class AwareHead(nn.Module):
    """An ImacMLP run through :class:`AwareLinear` layers and its own neurons."""

    def __init__(self, head: Any, spec: ImacSpec, rows: int | None) -> None:
        super().__init__()
        self.head = head
        info = head.layer_info()
        self.layers = nn.ModuleList(
            AwareLinear(lin, i["volts_per_unit_sum"], spec, rows) for lin, i in zip(head.linears, info, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for aware, neuron in zip(self.layers, self.head.neurons, strict=True):
            z = aware(x)
            x = neuron.curve.torch_forward(z) / neuron.curve.v_dd
        return x


def _training_setup(model: Any, spec: ImacSpec, rows: int | None, x_train: np.ndarray, y_train: np.ndarray, lr: float,
                    seed: int, threads: int) -> tuple[Any, AwareHead, Any, torch.Tensor, torch.Tensor, Any]:
    """(head, its hardware-aware wrapper, Adam on the head's weights, x, y, shuffling generator)."""
    # the head's products are small: one thread is fastest, and it leaves the other core free
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = model.head
    aware = AwareHead(head, spec, rows)
    opt = torch.optim.Adam([p for lin in head.linears for p in lin.parameters()], lr=lr)
    return (head, aware, opt, torch.as_tensor(x_train, dtype=torch.float32),
            torch.as_tensor(y_train, dtype=torch.long), gen)


def finetune_hardware_aware(
    model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    spec: ImacSpec,
    rows: int | None,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    threads: int = 1,
) -> list[dict[str, float]]:
    """Fine-tune the binary head of ``model`` through :class:`AwareHead` (in place).

    ``x_train``: the first IMAC layer's inputs in {-1, +1} (the binarized CPU features), so the
    CPU trunk is untouched.  Adam on the shadow weights, clipped to [-1, 1] after each step,
    cross-entropy on the model's own read-out.  Returns per-epoch loss and accuracy.
    """
    from imac.progress import progress_bar

    head, aware, opt, x, y, gen = _training_setup(model, spec, rows, x_train, y_train, lr, seed, threads)
    history = []
    head.train()
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        tot_loss, correct = 0.0, 0
        bar = progress_bar(range(0, len(x), batch_size), desc=f"hardware-aware epoch {ep + 1}/{epochs}",
                           enabled=progress, leave=False)
        for i in bar:
            idx = perm[i : i + batch_size]
            out = aware(x[idx])
            logits = model.logits(out)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            head.clip_()
            tot_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
        history.append({"epoch": ep + 1, "loss": tot_loss / len(x), "train_acc": correct / len(x)})
    head.eval()
    return history


def finetune_circuit_in_loop(
    model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    spec: ImacSpec,
    rows: int | None,
    build_circuit: Callable[[], Callable[[np.ndarray], list[np.ndarray]]],
    epochs: int = 1,
    lr: float = 2e-4,
    batch_size: int = 128,
    recompile_every: int = 100,
    seed: int = 1,
    progress: bool = True,
    threads: int = 1,
) -> list[dict[str, float]]:
    """Fine-tune the binary head through the compiled ``circuit`` fidelity (in place).

    The behavioural forward (:class:`AwareHead`) misses the wires and the loaded neuron outputs.
    Here each layer's neuron input is ``z = aware_l(h) + (z_circuit - aware_old_l(h_circuit))``:
    the compiled circuit's residual over the behavioural model, both for the weights the circuit
    was compiled with, added to the behavioural forward of the current weights (whose gradient
    is used).  At a compile the forward equals the circuit exactly; between compiles a flipped
    weight still acts through ``aware_l``.  ``build_circuit()`` compiles the circuit for the
    head's current binary weights and returns a function from first-layer inputs to the
    circuit's per-layer z (V); it is rerun every ``recompile_every`` steps.
    """
    from imac.progress import progress_bar

    head, aware, opt, x, y, gen = _training_setup(model, spec, rows, x_train, y_train, lr, seed, threads)
    history = []
    step = 0
    circuit: Callable[[np.ndarray], list[np.ndarray]] | None = None
    frozen: AwareHead | None = None
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        tot_loss, correct = 0.0, 0
        bar = progress_bar(range(0, len(x), batch_size), desc=f"circuit-in-the-loop epoch {ep + 1}/{epochs}",
                           enabled=progress, leave=False)
        for i in bar:
            if circuit is None or frozen is None or step % recompile_every == 0:
                head.eval()
                circuit = build_circuit()
                frozen = AwareHead(copy.deepcopy(head), spec, rows)
            head.train()
            idx = perm[i : i + batch_size]
            xb = x[idx]
            z_circ = [torch.as_tensor(z, dtype=torch.float32) for z in circuit(xb.double().numpy())]
            h = xb
            with torch.no_grad():  # the circuit's residual over the behavioural model, per layer
                resid, hc = [], xb
                for layer, neuron, zc in zip(frozen.layers, frozen.head.neurons, z_circ, strict=True):
                    resid.append(zc - layer(hc))
                    hc = neuron.curve.torch_forward(zc) / neuron.curve.v_dd
            for layer, neuron, r in zip(aware.layers, head.neurons, resid, strict=True):
                h = neuron.curve.torch_forward(layer(h) + r) / neuron.curve.v_dd
            logits = model.logits(h)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            head.clip_()
            step += 1
            tot_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
        history.append({"epoch": ep + 1, "loss": tot_loss / len(x), "train_acc": correct / len(x)})
    head.eval()
    return history
