"""A second, independent way to the amplifier outputs: a Krylov solve of the full nodal system.

Used as the reference for arrays too large for ngspice and for a sparse LU (benchmarks/
xbar_scaling.py checks the nested-dissection transfer matrix against it at 512x512 and up).
It shares nothing with :mod:`imac.circuit.nested` but the netlist: it iterates on the nodal
matrix G that :func:`imac.circuit.solve.assemble` builds from the element list (the matrix the
ngspice comparisons validate), one input vector at a time, and reports the true residual.

Preconditioner: the line solves.  Without the device conductances' couplings, every input line
is a chain and every output's two summing lines are chains joined at the amplifier (p line,
p end, q end, q line reversed), so G minus those couplings, in that node order, is one
tridiagonal matrix, factored once by LAPACK (dgttrf).  The wires (~0.1 S) are stiff, the
devices (~1e-4 S) soft, so the preconditioned system converges in ~30 (256x256) to ~150
(1024x1024) iterations: CG where G is symmetric (instrumentation amplifiers), BiCGSTAB where
the difference amplifier's stamp makes it not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import lapack

from imac.circuit.netlist import NodeMap, Subarray
from imac.errors import ConfigError, SolverError


def line_order(nodes: NodeMap) -> np.ndarray:
    """Unknowns ordered line by line: input lines, then per output p line, p end, q end, q line reversed."""
    cols = [nodes.x.reshape(-1)]
    for j in range(nodes.p.shape[1]):
        cols += [nodes.p[:, j], nodes.p_end[j:j + 1], nodes.q_end[j:j + 1], nodes.q[::-1, j]]
    return np.concatenate(cols)


@dataclass(frozen=True)
class KrylovResult:
    outputs: np.ndarray  # (batch, cols), V
    iterations: list[int]  # per input vector
    residual_a: float  # max |G v - B u| over the batch, A


def krylov_outputs(sub: Subarray, inputs: np.ndarray, v_bias: float = 0.8, rtol: float = 1e-13,
                   maxiter: int = 5000) -> KrylovResult:
    """Amplifier outputs (batch, cols) for inputs (batch, n_inputs) by preconditioned CG/BiCGSTAB."""
    from imac.circuit.solve import _check_inputs, assemble  # solve imports the nested solver, not this

    if not (sub.r_vertical > 0 and sub.r_horizontal > 0):
        raise ConfigError("the line preconditioner needs r_vertical > 0 and r_horizontal > 0")
    u = _check_inputs(inputs, sub.n_inputs)
    if sub.has_bias:
        u = np.hstack([u, np.full((u.shape[0], 1), float(v_bias))])
    nodes, _, G, B, C = assemble(sub)
    perm = line_order(nodes)
    if perm.size != nodes.n_unknowns:
        raise SolverError("line order does not cover the unknowns")
    Gp = G[perm][:, perm].tocsr()
    dl, d, du = Gp.diagonal(-1), Gp.diagonal(0), Gp.diagonal(1)
    dl, d, du, du2, ipiv, info = lapack.dgttrf(dl, d, du)
    if info != 0:
        raise SolverError(f"line preconditioner is singular (dgttrf info {info})")

    def precondition(r: np.ndarray) -> np.ndarray:
        x, _ = lapack.dgttrs(dl, d, du, du2, ipiv, np.asarray(r).reshape(-1))
        return x

    n = Gp.shape[0]
    M = spla.LinearOperator((n, n), matvec=precondition, dtype=float)
    symmetric = sub.amp_topology == "instrumentation"
    Bp = sp.csr_matrix(B)[perm]
    outs, its = [], []
    residual = 0.0
    for k in range(u.shape[0]):
        b = np.asarray(Bp @ u[k]).ravel()
        count = [0]

        def step(_: object, count: list[int] = count) -> None:
            count[0] += 1

        solver = spla.cg if symmetric else spla.bicgstab
        v, info = solver(Gp, b, rtol=rtol, atol=0.0, maxiter=maxiter, M=M, callback=step)
        if info != 0:
            raise SolverError(f"Krylov solve did not converge in {maxiter} iterations (info {info})")
        residual = max(residual, float(np.max(np.abs(Gp @ v - b))))
        full = np.empty(n)
        full[perm] = v
        outs.append(C @ full)
        its.append(count[0])
    return KrylovResult(np.array(outs), its, residual)
