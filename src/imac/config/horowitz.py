"""The public basis of every derived digital energy: Horowitz's 45 nm figures and one scaling rule.

M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014 (45 nm,
0.9 V).  A CPU core's or the interface's energies that a spec leaves out are these numbers
scaled to its node and supply with :data:`SCALING_RULE`.
"""

from __future__ import annotations

import itertools
import math

H45_NODE_NM = 45.0
H45_VDD_V = 0.9
H45_FP32_MAC_J = 3.7e-12 + 0.9e-12  # fp32 multiply 3.7 pJ + fp32 add 0.9 pJ
H45_INT8_MAC_J = 0.2e-12 + 0.1e-12  # int8 multiply 0.2 pJ + int32 accumulate 0.1 pJ
H45_FP32_OP_J = 0.9e-12  # fp32 add (an element-wise op: compare, add, scale)
H45_INT8_OP_J = 0.03e-12  # int8 add
H45_INSTRUCTION_J = 70e-12  # fetch/decode/register-file/control overhead of one instruction
H45_WIRE_J_PER_BYTE_MM = 0.1e-12 * 8  # on-die wire, ~0.1 pJ/bit/mm
# SRAM read energy per 64-bit word vs array size (8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ)
H45_SRAM_POINTS = ((8 * 1024, 10e-12 / 8), (32 * 1024, 20e-12 / 8), (1024 * 1024, 100e-12 / 8))
H45_SOURCE = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm, 0.9 V)"
SCALING_RULE = "E ~ C V^2 with C ~ feature size: E = E45 * (node/45 nm) * (V/0.9 V)^2"


def scale_energy(e45_j: float, node_nm: float, vdd_v: float) -> float:
    """Scale a 45 nm / 0.9 V energy (J) to ``node_nm`` and ``vdd_v`` with :data:`SCALING_RULE`."""
    return e45_j * (node_nm / H45_NODE_NM) * (vdd_v / H45_VDD_V) ** 2


def sram_energy_45nm(size_bytes: float) -> float:
    """SRAM read energy per byte (J) of an array of ``size_bytes`` at 45 nm.

    Log-log interpolation through Horowitz's three points; beyond 1 MB the 32 KB-1 MB slope
    (energy ~ size^0.46, close to the usual sqrt(size) wire-length rule) is extrapolated."""
    pts = H45_SRAM_POINTS
    if size_bytes <= pts[0][0]:
        return pts[0][1]
    for (s0, e0), (s1, e1) in itertools.pairwise(pts):
        if size_bytes <= s1 or (s1, e1) == pts[-1]:
            slope = math.log(e1 / e0) / math.log(s1 / s0)
            return e0 * (size_bytes / s0) ** slope
    raise AssertionError("unreachable")


CORE_ENERGIES_45NM = {
    "mac_energy_fp32_j": (H45_FP32_MAC_J, f"{H45_SOURCE}: fp32 mult 3.7 pJ + add 0.9 pJ, scaled ({SCALING_RULE})"),
    "mac_energy_int8_j": (H45_INT8_MAC_J, f"{H45_SOURCE}: int8 mult 0.2 pJ + int32 add 0.1 pJ, scaled "
                          f"({SCALING_RULE})"),
    "op_energy_fp32_j": (H45_FP32_OP_J, f"{H45_SOURCE}: fp32 add 0.9 pJ, scaled ({SCALING_RULE})"),
    "op_energy_int8_j": (H45_INT8_OP_J, f"{H45_SOURCE}: int8 add 0.03 pJ, scaled ({SCALING_RULE})"),
    "instruction_energy_j": (H45_INSTRUCTION_J, f"{H45_SOURCE}: ~70 pJ instruction overhead (I-cache, RF, control) "
                             f"of a 45 nm core, scaled ({SCALING_RULE}); paid once per SIMD instruction"),
}
