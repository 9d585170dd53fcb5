"""The subarray solver: ngspice reference, closed form, an independent dense oracle, and the
circuit laws as hypothesis properties.

Named tolerances (DESIGN.md, conventions item 7):

* ``SPICE_ATOL_V``: solver vs ngspice operating point, amplifier outputs (the VCVS op-amp of
  gain 1e9 and ngspice's own tolerances leave ~1e-7 V at outputs of a few volts);
* ``IDEAL_ATOL_V``: zero wire/driver resistance vs the closed form (float rounding only);
* ``ORACLE_ATOL_V``: sparse solver vs the dense MNA oracle with an explicit ideal op-amp;
* ``KCL_ATOL_A``: Kirchhoff current-law residual (device currents are ~1e-5..1e-4 A).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imac.circuit.netlist import FIXED, Subarray
from imac.circuit.solve import SolvedSubarray, ideal_outputs, solve_subarray
from imac.circuit.spice import spice_subarray_outputs, subarray_netlist
from imac.circuit.wires import cell_parasitics
from imac.config import WireSpec
from imac.errors import ConfigError, ShapeError

SPICE_ATOL_V = 1e-6
IDEAL_ATOL_V = 1e-9
ORACLE_ATOL_V = 1e-9
KCL_ATOL_A = 1e-12

R_LOW = 8488.263631567752  # R_P of the paper preset, ohm
R_HIGH = 25464.790894703256  # R_AP
V_DD = 0.8
_PAR = cell_parasitics(WireSpec())
R_V, R_H = _PAR.r_vertical, _PAR.r_horizontal  # ~9.6 and ~12.0 ohm per cell


def encode(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g_plus, g_minus), S, of a +-1 weight matrix (differential pair, R_P / R_AP)."""
    w = np.asarray(weights)
    return np.where(w > 0, 1 / R_LOW, 1 / R_HIGH), np.where(w > 0, 1 / R_HIGH, 1 / R_LOW)


def random_binary_subarray(
    rng: np.random.Generator,
    rows: int,
    cols: int,
    *,
    has_bias: bool,
    r_driver: float | np.ndarray = 0.0,
    r_vertical: float = R_V,
    r_horizontal: float = R_H,
    gain: float | np.ndarray = 30.0,
) -> Subarray:
    g_plus, g_minus = encode(rng.choice([-1, 1], size=(rows, cols)))
    return Subarray(
        g_plus, g_minus, r_vertical, r_horizontal, r_driver, gain, 1000.0, has_bias
    )


def random_inputs(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """First row: binarized +-V_DD (first-layer style); the rest: 0..V_DD (hidden-layer)."""
    u = rng.uniform(0.0, V_DD, size=(batch, n))
    u[0] = rng.choice([-V_DD, V_DD], size=n)
    return u


# --------------------------------------------------------------------------------------------
# an independent dense oracle: every node explicit, the op-amp as MNA with V(ap) = V(am)
# --------------------------------------------------------------------------------------------


def dense_oracle_outputs(sub: Subarray, inputs: np.ndarray, v_bias: float) -> np.ndarray:
    """Outputs (batch, cols) of the subarray by dense modified nodal analysis.

    Built from the layout in SYSTEM.md section 3 without the solver's node merging or its
    reduction of the amplifier to loads: input line i is driven at column 0 through r_driver
    and one wire segment, then one segment per cell; each summing line has one segment per
    row, the last one into the amplifier; the difference amplifier is R1 = R2 = r_in,
    R3 = R4 = gain r_in around an ideal op-amp.  Needs positive wire resistances.
    """
    n, m = sub.rows, sub.cols
    assert sub.r_vertical > 0 and sub.r_horizontal > 0
    idx = iter(range(10**9))
    x = np.array([[next(idx) for _ in range(m)] for _ in range(n)])
    p = np.array([[next(idx) for _ in range(m)] for _ in range(n)])
    q = np.array([[next(idx) for _ in range(m)] for _ in range(n)])
    pe, qe, am, ap, out = (np.array([next(idx) for _ in range(m)]) for _ in range(5))
    n_nodes = int(out[-1]) + 1
    size = n_nodes + m  # plus one op-amp output current per column
    G = np.zeros((size, size))
    S = np.zeros((size, n))  # right-hand side per source voltage

    def conductor(a: int, b: int | None, g: float, src: int | None = None) -> None:
        """g between node a and node b, or between a and source src, or a and ground."""
        G[a, a] += g
        if b is not None:
            G[b, b] += g
            G[a, b] -= g
            G[b, a] -= g
        elif src is not None:
            S[a, src] += g

    for i in range(n):
        conductor(int(x[i, 0]), None, 1.0 / (sub.r_driver[i] + sub.r_vertical), src=i)
        for j in range(m - 1):
            conductor(int(x[i, j]), int(x[i, j + 1]), 1.0 / sub.r_vertical)
        for j in range(m):
            conductor(int(x[i, j]), int(p[i, j]), sub.g_plus[i, j])
            conductor(int(x[i, j]), int(q[i, j]), sub.g_minus[i, j])
    for j in range(m):
        for line, end in ((p, pe), (q, qe)):
            for i in range(n - 1):
                conductor(int(line[i, j]), int(line[i + 1, j]), 1.0 / sub.r_horizontal)
            conductor(int(line[n - 1, j]), int(end[j]), 1.0 / sub.r_horizontal)
        r_in, r_fb = sub.amp_r_in, sub.amp_gain[j] * sub.amp_r_in
        conductor(int(qe[j]), int(am[j]), 1.0 / r_in)
        conductor(int(am[j]), int(out[j]), 1.0 / r_fb)
        conductor(int(pe[j]), int(ap[j]), 1.0 / r_in)
        conductor(int(ap[j]), None, 1.0 / r_fb)
        k = n_nodes + j
        G[int(out[j]), k] -= 1.0  # op-amp current into out_j
        G[k, int(ap[j])] = 1.0  # ideal op-amp: V(ap) - V(am) = 0
        G[k, int(am[j])] = -1.0
    u = np.atleast_2d(np.asarray(inputs, dtype=float))
    if sub.has_bias:
        u = np.hstack([u, np.full((u.shape[0], 1), v_bias)])
    v = np.linalg.solve(G, S @ u.T)
    return v[out].T


# --------------------------------------------------------------------------------------------
# ngspice reference (SYSTEM.md: "checked against ngspice")
# --------------------------------------------------------------------------------------------

SPICE_CASES = [
    (rows, cols, bias, rd)
    for rows, cols in [(2, 2), (3, 5), (7, 4), (8, 8), (16, 16), (32, 32)]
    for bias in (False, True)
    for rd in (0.0, 250.0)
]


@pytest.mark.spice
@pytest.mark.parametrize(
    ("rows", "cols", "has_bias", "r_driver"),
    SPICE_CASES,
    ids=[f"{r}x{c}-{'bias' if b else 'nobias'}-rd{d:g}" for r, c, b, d in SPICE_CASES],
)
def test_solver_matches_ngspice(rows: int, cols: int, has_bias: bool, r_driver: float) -> None:
    rng = np.random.default_rng(1000 * rows + 10 * cols + 2 * has_bias + (r_driver > 0))
    sub = random_binary_subarray(rng, rows, cols, has_bias=has_bias, r_driver=r_driver)
    batch = 1 if rows * cols >= 1024 else 3  # a 32x32 operating point costs ~0.4 s
    u = random_inputs(rng, batch, sub.n_inputs)
    v_bias = V_DD
    got = solve_subarray(sub).outputs(u, v_bias)
    ref = spice_subarray_outputs(sub, u, v_bias)
    assert got.shape == ref.shape == (batch, cols)
    np.testing.assert_allclose(got, ref, rtol=0, atol=SPICE_ATOL_V)
    # the comparison must not be vacuous: the outputs are volts, not microvolts
    assert np.max(np.abs(ref)) > 0.05


@pytest.mark.spice
def test_solver_matches_ngspice_with_per_line_driver_and_per_column_gain() -> None:
    rng = np.random.default_rng(77)
    rd = rng.uniform(0.0, 500.0, size=6)
    rd[2] = 0.0
    gain = np.array([30.0, 10.0, 1.0, 30.0])
    sub = random_binary_subarray(rng, 6, 4, has_bias=True, r_driver=rd, gain=gain)
    u = random_inputs(rng, 2, sub.n_inputs)
    np.testing.assert_allclose(
        solve_subarray(sub).outputs(u, 0.7),
        spice_subarray_outputs(sub, u, 0.7),
        rtol=0,
        atol=SPICE_ATOL_V,
    )


@pytest.mark.spice
def test_parallel_spice_runs_agree_with_serial() -> None:
    rng = np.random.default_rng(8)
    sub = random_binary_subarray(rng, 3, 2, has_bias=True, r_driver=100.0)
    u = random_inputs(rng, 3, sub.n_inputs)
    serial = spice_subarray_outputs(sub, u, V_DD)
    np.testing.assert_array_equal(spice_subarray_outputs(sub, u, V_DD, n_jobs=2), serial)
    np.testing.assert_allclose(solve_subarray(sub).outputs(u, V_DD), serial, atol=SPICE_ATOL_V)


@pytest.mark.spice
@pytest.mark.parametrize(("r_vertical", "r_horizontal", "r_driver"), [
    (0.0, 0.0, 0.0), (0.0, R_H, 0.0), (R_V, 0.0, 0.0), (0.0, 0.0, 300.0),
])
def test_merged_nodes_match_ngspice(r_vertical: float, r_horizontal: float, r_driver: float) -> None:
    """Zero-resistance wires merge nodes in the solver; the SPICE export must agree."""
    rng = np.random.default_rng(5)
    sub = random_binary_subarray(
        rng, 5, 3, has_bias=True, r_driver=r_driver, r_vertical=r_vertical,
        r_horizontal=r_horizontal,
    )
    u = random_inputs(rng, 2, sub.n_inputs)
    ref = spice_subarray_outputs(sub, u, V_DD)
    np.testing.assert_allclose(solve_subarray(sub).outputs(u, V_DD), ref, rtol=0, atol=SPICE_ATOL_V)
    if r_vertical == r_horizontal == r_driver == 0.0:
        np.testing.assert_allclose(ideal_outputs(sub, u, V_DD), ref, rtol=0, atol=SPICE_ATOL_V)


def test_netlist_refuses_wrong_input_count(rng: np.random.Generator) -> None:
    sub = random_binary_subarray(rng, 4, 2, has_bias=True)
    with pytest.raises(ShapeError, match="3 input"):
        subarray_netlist(sub, np.zeros(4))


def test_netlist_draws_every_element(rng: np.random.Generator) -> None:
    sub = random_binary_subarray(rng, 3, 2, has_bias=False, r_driver=100.0)
    text = subarray_netlist(sub, [0.1, 0.2, 0.3])
    lines = text.splitlines()
    sources = [ln for ln in lines if ln.startswith("V")]
    resistors = [ln for ln in lines if ln.startswith("R")]
    opamps = [ln for ln in lines if ln.startswith("E")]
    assert len(sources) == 3
    # 3 driver+first segment, 3*(2-1) input-line segments, 12 devices,
    # 2 lines * 2 columns * 3 summing segments, 4 amplifier resistors * 2 columns
    assert len(resistors) == 3 + 3 + 12 + 12 + 8
    assert len(opamps) == 2
    assert lines[-1] == ".end"


# --------------------------------------------------------------------------------------------
# closed form and the dense oracle
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("has_bias", [False, True])
def test_zero_parasitics_equal_the_closed_form(rng: np.random.Generator, has_bias: bool) -> None:
    for rows, cols in [(1 + has_bias, 1), (2, 3), (9, 4), (32, 32), (64, 10)]:
        sub = random_binary_subarray(
            rng, rows, cols, has_bias=has_bias, r_vertical=0.0, r_horizontal=0.0
        )
        u = random_inputs(rng, 5, sub.n_inputs)
        np.testing.assert_allclose(
            solve_subarray(sub).outputs(u, V_DD), ideal_outputs(sub, u, V_DD),
            rtol=0, atol=IDEAL_ATOL_V,
        )


def test_closed_form_by_hand_for_one_synapse() -> None:
    """1 input, 1 output: V+ = u g+ / (g+ + 1/(r(1+A))), V- from KCL with the op-amp node."""
    gp, gm, r, a, u = 1 / 5000, 1 / 15000, 1000.0, 30.0, 0.8
    v_plus = u * gp / (gp + 1 / (r * (1 + a)))
    v_node = v_plus * a / (1 + a)  # non-inverting input, held by the ideal op-amp
    v_minus = (u * gm + v_node / r) / (gm + 1 / r)
    expected = a * (v_plus - v_minus)
    sub = Subarray(np.array([[gp]]), np.array([[gm]]), amp_gain=a, amp_r_in=r)
    assert ideal_outputs(sub, [[u]])[0, 0] == pytest.approx(expected, rel=1e-12)
    assert solve_subarray(sub).outputs([[u]])[0, 0] == pytest.approx(expected, rel=1e-12)
    assert expected > 0  # +1 weight, positive input: positive output


@pytest.mark.parametrize(
    ("rows", "cols", "has_bias", "r_driver"),
    [(1, 1, False, 0.0), (2, 3, True, 50.0), (5, 2, False, 300.0), (6, 6, True, 0.0)],
)
def test_sparse_solver_matches_dense_oracle(
    rng: np.random.Generator, rows: int, cols: int, has_bias: bool, r_driver: float
) -> None:
    sub = random_binary_subarray(
        rng, rows, cols, has_bias=has_bias, r_driver=r_driver,
        r_vertical=40.0, r_horizontal=70.0, gain=np.linspace(10.0, 30.0, cols),
    )
    u = random_inputs(rng, 4, sub.n_inputs)
    np.testing.assert_allclose(
        solve_subarray(sub).outputs(u, 0.6), dense_oracle_outputs(sub, u, 0.6),
        rtol=0, atol=ORACLE_ATOL_V,
    )


# --------------------------------------------------------------------------------------------
# hypothesis properties
# --------------------------------------------------------------------------------------------

# Resistances, ohm: exactly 0 (merged nodes) or a physical value.  Tiny values are left out on
# purpose: 5e-324 makes 1/r overflow, and below ~1 mohm a wire conductance of >= 1000 S beside
# device and load conductances of ~1e-4 S makes G so ill-conditioned that float rounding
# (~1e-9 V) swamps the effects the properties compare (real wires are ~10 ohm per cell).
_resistance = st.one_of(st.just(0.0), st.floats(0.1, 500.0))
# slack for float rounding in the monotonicity comparisons, V
MONOTONE_SLACK_V = 1e-10


@st.composite
def subarrays(
    draw: st.DrawFn,
    max_rows: int = 5,
    max_cols: int = 4,
    binary: bool | None = None,
    wires: st.SearchStrategy[float] = _resistance,
) -> Subarray:
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    has_bias = rows >= 2 and draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if binary if binary is not None else draw(st.booleans()):
        g_plus, g_minus = encode(rng.choice([-1, 1], size=(rows, cols)))
    else:  # arbitrary devices, e.g. under variation
        g_plus = 1.0 / rng.uniform(3e3, 3e4, size=(rows, cols))
        g_minus = 1.0 / rng.uniform(3e3, 3e4, size=(rows, cols))
    return Subarray(
        g_plus,
        g_minus,
        r_vertical=draw(wires),
        r_horizontal=draw(wires),
        r_driver=draw(_resistance),
        amp_gain=draw(st.sampled_from([1.0, 10.0, 30.0])),
        amp_r_in=1000.0,
        has_bias=has_bias,
    )


def _inputs_for(sub: Subarray, seed: int, batch: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-V_DD, V_DD, size=(batch, sub.n_inputs))


def _all_node_voltages(s: SolvedSubarray, u: np.ndarray, v_bias: float) -> np.ndarray:
    """Voltages (n_unknowns + rows, batch): unknowns, then the sources (FIXED - k -> row k)."""
    v = s.node_voltages(u, v_bias)
    src = s.sources(u, v_bias)
    return np.vstack([v, src[::-1]])  # index -1 - k from the end is source k


@given(sub=subarrays(), seed=st.integers(0, 2**32 - 1), v_bias=st.floats(0.0, 1.0))
def test_kirchhoff_residual_is_zero(sub: Subarray, seed: int, v_bias: float) -> None:
    s = solve_subarray(sub)
    u = _inputs_for(sub, seed)
    assert s.kirchhoff_residual(u, v_bias) < KCL_ATOL_A
    # an independent KCL check from the element list and the amplifier loads
    vall = _all_node_voltages(s, u, v_bias)
    el = s.elements
    i_el = el.g[:, None] * (vall[el.a] - vall[el.b])  # current a -> b
    net = np.zeros((s.nodes.n_unknowns, u.shape[0]))
    a_unk, b_unk = el.a >= 0, el.b >= 0
    np.add.at(net, el.a[a_unk], -i_el[a_unk])  # leaves a
    np.add.at(net, el.b[b_unk], i_el[b_unk])  # arrives at b
    vp, vq = vall[s.nodes.p_end], vall[s.nodes.q_end]
    gain = sub.amp_gain[:, None]
    net[s.nodes.p_end] -= vp / (sub.amp_r_in * (1 + gain))
    net[s.nodes.q_end] -= (vq - vp * gain / (1 + gain)) / sub.amp_r_in
    assert np.max(np.abs(net)) < KCL_ATOL_A


@given(sub=subarrays(max_rows=4, max_cols=3, wires=st.floats(0.01, 500.0)),
       seed=st.integers(0, 2**32 - 1))
def test_sparse_solver_matches_dense_oracle_property(sub: Subarray, seed: int) -> None:
    u = _inputs_for(sub, seed)
    np.testing.assert_allclose(
        solve_subarray(sub).outputs(u, V_DD), dense_oracle_outputs(sub, u, V_DD),
        rtol=0, atol=ORACLE_ATOL_V,
    )


@given(sub=subarrays(wires=st.just(0.0)), seed=st.integers(0, 2**32 - 1))
def test_zero_parasitics_equal_closed_form_property(sub: Subarray, seed: int) -> None:
    sub = Subarray(sub.g_plus, sub.g_minus, 0.0, 0.0, 0.0, sub.amp_gain, sub.amp_r_in,
                   sub.has_bias)
    u = _inputs_for(sub, seed)
    np.testing.assert_allclose(
        solve_subarray(sub).outputs(u, V_DD), ideal_outputs(sub, u, V_DD),
        rtol=0, atol=IDEAL_ATOL_V,
    )


@given(sub=subarrays(), seed=st.integers(0, 2**32 - 1),
       a=st.floats(-2.0, 2.0), b=st.floats(-2.0, 2.0), v_bias=st.floats(0.0, 1.0))
def test_outputs_are_affine_in_the_inputs(
    sub: Subarray, seed: int, a: float, b: float, v_bias: float
) -> None:
    s = solve_subarray(sub)
    u1, u2 = _inputs_for(sub, seed, batch=2)
    f = s.outputs
    zero = np.zeros(sub.n_inputs)
    f0 = f(zero, v_bias)
    # f(a u1 + b u2) = a f(u1) + b f(u2) + (1 - a - b) f(0): affine, the bias line is the offset
    lhs = f(a * u1 + b * u2, v_bias)
    rhs = a * f(u1, v_bias) + b * f(u2, v_bias) + (1 - a - b) * f0
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-10)
    # the transfer matrix and the offset are what the full nodal solve gives
    full = (s.C @ s.node_voltages(np.vstack([u1, u2]), v_bias)).T
    np.testing.assert_allclose(f(np.vstack([u1, u2]), v_bias), full, rtol=0, atol=1e-10)
    np.testing.assert_allclose(f0[0], s.offset(v_bias), rtol=0, atol=1e-12)
    if not sub.has_bias:
        np.testing.assert_array_equal(s.offset(v_bias), 0.0)


@given(sub=subarrays(), seed=st.integers(0, 2**32 - 1), v_bias=st.floats(0.0, 1.0))
def test_device_currents_sum_to_the_amplifier_load_currents(
    sub: Subarray, seed: int, v_bias: float
) -> None:
    s = solve_subarray(sub)
    u = _inputs_for(sub, seed)
    i_plus, i_minus = s.device_currents(u, v_bias)
    assert i_plus.shape == i_minus.shape == (u.shape[0], sub.rows, sub.cols)
    v = s.node_voltages(u, v_bias)  # (n_unknowns, batch)
    vp, vq = v[s.nodes.p_end].T, v[s.nodes.q_end].T  # (batch, cols)
    gain = sub.amp_gain
    load_plus = vp / (sub.amp_r_in * (1 + gain))  # I+ end to ground through R2 + R4
    load_minus = (vq - vp * gain / (1 + gain)) / sub.amp_r_in  # into R1, at the op-amp node
    np.testing.assert_allclose(i_plus.sum(axis=1), load_plus, rtol=1e-7, atol=KCL_ATOL_A)
    np.testing.assert_allclose(i_minus.sum(axis=1), load_minus, rtol=1e-7, atol=KCL_ATOL_A)
    # and the output is the amplifier of those line voltages
    np.testing.assert_allclose(s.outputs(u, v_bias), gain * (vp - vq), rtol=0, atol=1e-10)


# -- monotonicity in the wire resistance ---------------------------------------------------
#
# "More wire resistance never increases |output| for all-positive inputs" does NOT hold for
# the differential output, nor even for the summing-line voltages when the input lines sit at
# different voltages (the two tests after the properties pin a counterexample of each):
#
# * the output is a difference, gain * (V(I+) - V(I-)); both line voltages fall with more
#   wire resistance, but by different amounts (the low-R line carries more current and so
#   drops more), so a balanced column whose output is ~0 gains a non-zero output;
# * an input line held lower than the others (e.g. 0 V) is a current sink; more summing-line
#   resistance isolates that sink from the amplifier end and so *raises* V(I+).
#
# What does hold, and is tested: with every input line (bias line included) at the same
# positive voltage, each summing-line end voltage V(I+), V(I-) at the amplifier is non-
# increasing in the vertical, horizontal and driver resistance separately, for any positive
# device conductances; and for columns of uniform weights the output magnitude falls as well.
# Both are checked empirically (stress runs of 1500 hypothesis examples each found no
# counterexample), not derived: the I- load returns to the op-amp node, which follows V(I+),
# so plain Rayleigh monotonicity of a passive network does not cover it.


def _with(sub: Subarray, rv: float, rh: float, rd: float) -> Subarray:
    return Subarray(sub.g_plus, sub.g_minus, rv, rh, rd, sub.amp_gain, sub.amp_r_in,
                    sub.has_bias)


def _end_voltages(sub: Subarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    s = solve_subarray(sub)
    v = s.node_voltages(np.full((1, sub.n_inputs), level), level)[:, 0]
    return v[s.nodes.p_end], v[s.nodes.q_end]


@given(
    sub=subarrays(max_rows=6, max_cols=4),
    level=st.floats(0.01, V_DD),
    which=st.sampled_from(["vertical", "horizontal", "driver"]),
    base=st.lists(_resistance, min_size=3, max_size=3),
    factor=st.floats(1.01, 20.0),
)
def test_line_end_voltages_never_rise_with_wire_resistance(
    sub: Subarray, level: float, which: str, base: list[float], factor: float
) -> None:
    rv, rh, rd = base
    more = {"vertical": (rv * factor + 1, rh, rd), "horizontal": (rv, rh * factor + 1, rd),
            "driver": (rv, rh, rd * factor + 1)}[which]
    p0, q0 = _end_voltages(_with(sub, rv, rh, rd), level)
    p1, q1 = _end_voltages(_with(sub, *more), level)
    assert np.all(p0 > 0) and np.all(q0 > 0)
    assert np.all(np.abs(p1) <= np.abs(p0) + MONOTONE_SLACK_V)
    assert np.all(np.abs(q1) <= np.abs(q0) + MONOTONE_SLACK_V)
    # and the lines stay below the source level (a passive network)
    assert np.all(p0 <= level) and np.all(q0 <= level)


@given(
    rows=st.integers(1, 8),
    signs=st.lists(st.sampled_from([-1, 1]), min_size=1, max_size=4),
    has_bias=st.booleans(),
    level=st.floats(0.05, V_DD),
    base=st.lists(_resistance, min_size=3, max_size=3),
    scale=st.floats(1.01, 10.0),
)
def test_uniform_columns_lose_output_with_wire_resistance(
    rows: int, signs: list[int], has_bias: bool, level: float, base: list[float], scale: float
) -> None:
    has_bias = has_bias and rows >= 2
    w = np.broadcast_to(np.array(signs), (rows, len(signs)))
    g_plus, g_minus = encode(w)
    rv, rh, rd = base
    outs = []
    for k in (1.0, scale):
        sub = Subarray(g_plus, g_minus, rv * k, rh * k, rd * k, 30.0, 1000.0, has_bias)
        outs.append(np.abs(solve_subarray(sub).outputs(np.full(sub.n_inputs, level), level)))
    assert np.all(outs[1] <= outs[0] + 30 * MONOTONE_SLACK_V)  # gain 30


def test_counterexample_differential_output_grows_with_wire_resistance() -> None:
    g_plus, g_minus = encode(np.array([[1], [-1]]))  # a balanced column
    out = [
        abs(solve_subarray(Subarray(g_plus, g_minus, r, r)).outputs([[V_DD, V_DD]])[0, 0])
        for r in (0.0, 100.0, 1000.0)
    ]
    assert out[0] < 1e-12
    assert out[0] < out[1] < out[2]


def test_counterexample_line_voltage_grows_with_wire_resistance_for_unequal_inputs() -> None:
    g_plus, g_minus = encode(np.array([[1], [1]]))
    u = [[0.0, V_DD]]  # the 0 V line (far from the amplifier) sinks current
    v_plus = []
    for r in (0.0, 100.0):
        s = solve_subarray(Subarray(g_plus, g_minus, r, r))
        v_plus.append(s.node_voltages(u)[s.nodes.p_end[0], 0])
    assert v_plus[1] > v_plus[0]


# --------------------------------------------------------------------------------------------
# the transfer matrix, the batch path and the node bookkeeping
# --------------------------------------------------------------------------------------------


def test_more_parasitics_cost_accuracy_on_large_arrays(rng: np.random.Generator) -> None:
    """Parasitics are the main accuracy limit of large arrays (SYSTEM.md section 3)."""
    errors = []
    for size in (8, 32, 64):
        sub = random_binary_subarray(rng, size, size, has_bias=True)
        ideal = Subarray(sub.g_plus, sub.g_minus, 0.0, 0.0, 0.0, 30.0, 1000.0, True)
        u = random_inputs(rng, 20, sub.n_inputs)
        err = solve_subarray(sub).outputs(u) - ideal_outputs(ideal, u)
        errors.append(np.sqrt(np.mean(err**2)))
    assert errors[0] < errors[1] < errors[2]


def test_node_merging_counts() -> None:
    g = np.full((3, 4), 1e-4)
    assert solve_subarray(Subarray(g, g)).nodes.n_unknowns == 2 * 4
    assert solve_subarray(Subarray(g, g, r_driver=10.0)).nodes.n_unknowns == 3 + 2 * 4
    assert solve_subarray(Subarray(g, g, r_vertical=1.0)).nodes.n_unknowns == 12 + 8
    assert solve_subarray(Subarray(g, g, 1.0, 1.0)).nodes.n_unknowns == 12 + 2 * 12 + 8


def test_fixed_node_encoding_round_trips() -> None:
    g = np.full((3, 2), 1e-4)
    s = solve_subarray(Subarray(g, g))
    assert np.all(s.nodes.x < 0)
    np.testing.assert_array_equal(FIXED - s.nodes.x[:, 0], np.arange(3))


def test_transfer_matrix_shape_and_bias_column(rng: np.random.Generator) -> None:
    sub = random_binary_subarray(rng, 6, 3, has_bias=True)
    s = solve_subarray(sub)
    assert s.A_full.shape == (3, 6)
    assert s.A.shape == (3, 5)
    u = random_inputs(rng, 4, 5)
    np.testing.assert_allclose(s.outputs(u, 0.5), u @ s.A.T + 0.5 * s.A_full[:, -1], atol=1e-12)
    # a 1-D input is a batch of one
    np.testing.assert_allclose(s.outputs(u[0], 0.5), s.outputs(u[:1], 0.5))


def test_signs_follow_the_weights_on_an_ideal_array() -> None:
    w = np.array([[1, -1], [1, -1], [1, -1]])
    sub = Subarray(*encode(w))
    out = solve_subarray(sub).outputs(np.full((1, 3), V_DD))[0]
    assert out[0] > 0 > out[1]


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 4)), np.zeros(4), np.zeros((2, 2, 3)), np.array([[0.1, np.nan, 0.2]]),
     np.array([[0.1, np.inf, 0.2]])],
    ids=["wrong-width", "wrong-1d", "3-d", "nan", "inf"],
)
def test_bad_inputs_raise_shape_error(rng: np.random.Generator, bad: np.ndarray) -> None:
    sub = random_binary_subarray(rng, 4, 2, has_bias=True)  # 3 caller inputs
    s = solve_subarray(sub)
    for call in (s.outputs, s.node_voltages, s.device_currents, s.kirchhoff_residual,
                 lambda u: ideal_outputs(sub, u)):
        with pytest.raises(ShapeError):
            call(bad)


def test_conductance_shape_problems_raise_shape_error() -> None:
    g = np.full((3, 2), 1e-4)
    with pytest.raises(ShapeError):
        Subarray(g, np.full((2, 3), 1e-4))
    with pytest.raises(ShapeError):
        Subarray(np.full(3, 1e-4), np.full(3, 1e-4))
    with pytest.raises(ShapeError):
        Subarray(np.zeros((0, 2)), np.zeros((0, 2)))
    g_nan = g.copy()
    g_nan[1, 1] = np.nan
    with pytest.raises(ShapeError):
        Subarray(g_nan, g)
    with pytest.raises(ShapeError):
        Subarray(g, g, amp_gain=np.array([30.0, 30.0, 30.0]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"g_plus": np.array([[1e-4, 0.0]])},
        {"g_minus": np.array([[1e-4, -1e-4]])},
        {"r_vertical": -1.0},
        {"r_horizontal": -1e-9},
        {"r_vertical": np.inf},
        {"r_horizontal": np.nan},
        {"r_driver": -10.0},
        {"r_driver": np.array([0.0, -1.0])},
        {"amp_r_in": 0.0},
        {"amp_gain": 0.0},
        {"amp_gain": -30.0},
        {"c_vertical": -1e-18},
    ],
    ids=lambda kw: next(iter(kw)),
)
def test_impossible_circuit_values_raise_config_error(kwargs: dict) -> None:
    args = {"g_plus": np.full((2, 2), 1e-4), "g_minus": np.full((2, 2), 1e-4)}
    for key in ("g_plus", "g_minus"):
        if key in kwargs:
            args[key] = np.broadcast_to(kwargs[key], (2, 2)).copy()
    rest = {k: v for k, v in kwargs.items() if k not in ("g_plus", "g_minus")}
    with pytest.raises(ConfigError):
        Subarray(**args, **rest)


def test_near_zero_wire_resistance_is_refused_not_inverted(rng: np.random.Generator) -> None:
    # 5e-324 ohm is finite and >= 0, but 1/r overflows: refuse it with a clear message
    base = random_binary_subarray(rng, 3, 2, has_bias=False)
    with pytest.raises(ConfigError, match="r_vertical"):
        Subarray(base.g_plus, base.g_minus, r_vertical=5e-324)
    with pytest.raises(ConfigError, match="r_driver"):
        Subarray(base.g_plus, base.g_minus, r_driver=1e-12)


# --------------------------------------------------------------------------------------------
# the nested-dissection reduction (circuit/nested.py) against the sparse LU and the oracle
# --------------------------------------------------------------------------------------------

# nested vs sparse LU transfer matrices (V/V); both are exact, this is float rounding
METHODS_ATOL = 1e-10


def _with_topology(sub: Subarray, topology: str) -> Subarray:
    return Subarray(sub.g_plus, sub.g_minus, sub.r_vertical, sub.r_horizontal, sub.r_driver,
                    sub.amp_gain, sub.amp_r_in, sub.has_bias, topology)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exercise every code path of the nested solver on small arrays: depth-first merges above
    tiny chunks, and the Cholesky + dsyrk merge (meant for large tiles) from 24 ports up."""
    from imac.circuit import nested

    monkeypatch.setattr(nested, "CHUNK_CELLS", 16)
    monkeypatch.setattr(nested, "LARGE_PORTS", 24)


NESTED_CASES = [
    (rows, cols, bias, rd, topo)
    for rows, cols, bias, rd in [(1, 1, False, 0.0), (2, 3, True, 50.0), (5, 2, False, 300.0),
                                 (9, 17, True, 0.0), (33, 32, True, 250.0), (40, 7, False, 0.0)]
    for topo in ("difference", "instrumentation")
]


@pytest.mark.parametrize("blocks", ["default", "small"])
@pytest.mark.parametrize(
    ("rows", "cols", "has_bias", "r_driver", "topology"), NESTED_CASES,
    ids=[f"{r}x{c}-{'bias' if b else 'nobias'}-rd{d:g}-{t[:4]}" for r, c, b, d, t in NESTED_CASES],
)
def test_nested_equals_sparse_lu(
    request: pytest.FixtureRequest, rows: int, cols: int, has_bias: bool, r_driver: float,
    topology: str, blocks: str,
) -> None:
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    rng = np.random.default_rng(rows * 100 + cols)
    sub = _with_topology(random_binary_subarray(
        rng, rows, cols, has_bias=has_bias, r_driver=r_driver, gain=np.linspace(10.0, 30.0, cols)
    ), topology)
    nested = solve_subarray(sub, method="nested")
    sparse = solve_subarray(sub, method="sparse")
    assert nested.method == "nested" and sparse.method == "sparse"
    np.testing.assert_allclose(nested.A_full, sparse.A_full, rtol=0, atol=METHODS_ATOL)
    y_sparse = sparse.input_admittance()
    # Y is a difference of conductances (a 1x1 instrumentation array draws nothing): judge it
    # against the device conductance scale
    np.testing.assert_allclose(nested.input_admittance(), y_sparse, rtol=1e-9,
                               atol=1e-9 * max(np.abs(y_sparse).max(), sub.g_plus.max()))


@pytest.mark.parametrize("r_driver", [0.0, 120.0])
def test_nested_matches_the_dense_oracle(small_blocks: None, r_driver: float) -> None:
    rng = np.random.default_rng(31)
    sub = random_binary_subarray(rng, 7, 6, has_bias=True, r_driver=r_driver,
                                 r_vertical=40.0, r_horizontal=70.0)
    u = random_inputs(rng, 3, sub.n_inputs)
    np.testing.assert_allclose(
        solve_subarray(sub, method="nested").outputs(u, 0.6), dense_oracle_outputs(sub, u, 0.6),
        rtol=0, atol=ORACLE_ATOL_V,
    )


@given(sub=subarrays(max_rows=12, max_cols=9, wires=st.floats(0.05, 500.0)),
       topology=st.sampled_from(["difference", "instrumentation"]))
def test_nested_equals_sparse_lu_property(sub: Subarray, topology: str) -> None:
    sub = _with_topology(sub, topology)
    np.testing.assert_allclose(
        solve_subarray(sub, method="nested").A_full, solve_subarray(sub, method="sparse").A_full,
        rtol=0, atol=METHODS_ATOL,
    )


def test_terminal_matrix_is_a_laplacian(small_blocks: None) -> None:
    """The passive array reduced onto its terminals: symmetric, zero row sums (no element to
    ground), positive semi-definite."""
    from imac.circuit.nested import terminal_matrix

    sub = random_binary_subarray(np.random.default_rng(3), 13, 10, has_bias=True, r_driver=80.0)
    S = terminal_matrix(sub)
    assert S.shape == (13 + 20, 13 + 20)
    np.testing.assert_allclose(S, S.T, rtol=0, atol=1e-15)
    assert np.max(np.abs(S.sum(axis=1))) < 1e-12 * np.max(np.abs(S))
    assert np.min(np.linalg.eigvalsh(S)) > -1e-12 * np.max(np.abs(S))


def test_auto_method_and_node_voltages_after_a_nested_solve() -> None:
    rng = np.random.default_rng(4)
    big = random_binary_subarray(rng, 24, 20, has_bias=True, r_driver=50.0)
    assert solve_subarray(big).method == "nested"
    tiny = random_binary_subarray(rng, 3, 2, has_bias=True)
    assert solve_subarray(tiny).method == "sparse"
    no_wires = random_binary_subarray(rng, 24, 20, has_bias=True, r_vertical=0.0)
    assert solve_subarray(no_wires).method == "sparse"
    with pytest.raises(ConfigError, match="nested"):
        solve_subarray(no_wires, method="nested")
    with pytest.raises(ConfigError, match="unknown solver method"):
        solve_subarray(big, method="magic")  # type: ignore[arg-type]
    # the full nodal solve (built on first use, nested-dissection order) agrees with the transfer matrix
    s = solve_subarray(big)
    u = random_inputs(rng, 2, big.n_inputs)
    np.testing.assert_allclose((s.C @ s.node_voltages(u, V_DD)).T, s.outputs(u, V_DD), rtol=0, atol=1e-10)
    assert s.kirchhoff_residual(u, V_DD) < KCL_ATOL_A


@pytest.mark.parametrize("topology", ["difference", "instrumentation"])
def test_krylov_reference_agrees(topology: str) -> None:
    """The independent reference used by the benchmark above ngspice's reach."""
    from imac.circuit.iterative import krylov_outputs

    rng = np.random.default_rng(6)
    sub = _with_topology(random_binary_subarray(rng, 20, 12, has_bias=True, r_driver=100.0), topology)
    u = random_inputs(rng, 2, sub.n_inputs)
    ref = krylov_outputs(sub, u, V_DD)
    assert ref.residual_a < KCL_ATOL_A
    np.testing.assert_allclose(solve_subarray(sub).outputs(u, V_DD), ref.outputs, rtol=0, atol=1e-9)


@pytest.mark.parametrize("topology", ["difference", "instrumentation"])
def test_nested_with_nearly_ideal_wires_tends_to_the_ideal_product(small_blocks: None, topology: str) -> None:
    """Stiff wires (1e-4 ohm against ~1e4 ohm devices) are the worst conditioning the
    reduction sees; it must still land on the parasitic-free closed form."""
    rng = np.random.default_rng(9)
    sub = _with_topology(random_binary_subarray(rng, 17, 12, has_bias=True, r_vertical=1e-4,
                                                r_horizontal=1e-4), topology)
    ideal = _with_topology(Subarray(sub.g_plus, sub.g_minus, 0.0, 0.0, 0.0, 30.0, 1000.0, True), topology)
    u = random_inputs(rng, 4, sub.n_inputs)
    got = solve_subarray(sub, method="nested").outputs(u, V_DD)
    # the IR drop left: ~1e-3 A line currents x 1e-4 ohm x 12 segments x gain 30, ~3e-5 V
    np.testing.assert_allclose(got, ideal_outputs(ideal, u, V_DD), rtol=0, atol=1e-4)
    # the two exact methods part by float rounding that grows as 1/r (measured: 1e-13 V at
    # 10 ohm, 1e-9 V at 10 mohm, 1.5e-7 V here): still inside the 1 uV budget
    np.testing.assert_allclose(got, solve_subarray(sub, method="sparse").outputs(u, V_DD), rtol=0,
                               atol=SPICE_ATOL_V)
