"""Architecture-level analytical model of one mobile CPU core running a CNN, layer by layer.

The model (see ``docs/cpu_model.md`` for the derivation and the check against PyTorch):

* **Workload** (:func:`model_workload`): each layer of a torch model (the conv ``trunk`` and the
  FC layers) as counts: multiply-accumulates (MACs), other element-wise operations (activation,
  pooling, batch norm, bias, int8 re-quantization), weights, input and output activations.  The
  shapes come from one forward pass of a dummy input, so any trunk of supported layers works.
* **Latency** per layer, roofline: ``max(t_compute, t_memory)`` (+ an optional fixed per-layer
  software overhead, 0 for the mobile presets).  ``t_compute`` = MACs over the SIMD MAC
  throughput (frequency x MACs/cycle x lane utilisation) + element-wise ops over the SIMD
  element throughput.  ``t_memory`` = the layer's compulsory bytes (weights + input + output)
  over the bandwidth of the level they come from: the smallest cache level that holds the whole
  working set, else DRAM.
* **Energy** per layer: MAC and op energies (Horowitz 2014 at 45 nm, scaled to the core's node)
  + the instruction overhead of the SIMD instructions that issue them + bytes x energy per byte of
  the level they come from + static power x latency.

Every preset parameter carries its public source in :attr:`CpuCoreSpec.sources` (a validator
refuses a preset without one).  Units are SI: hertz, seconds, joules, watts, bytes.

The core is :class:`imac.config.CpuCoreSpec` (the ``cpu`` section of the one spec tree).  Presets:
``cortex-a53`` (Raspberry Pi 3 B+) and ``cortex-a76`` (Raspberry Pi 5) as YAML files under
``configs/cores/``, and ``host`` (the machine this runs on, read from ``/proc/cpuinfo`` and
``/sys``).  ``imac cpu-model`` prints the per-layer tables and, with ``--check``, the
model/measured ratio against PyTorch.
"""

from imac.config import CpuCoreSpec
from imac.config.horowitz import H45_SOURCE, SCALING_RULE, scale_energy, sram_energy_45nm
from imac.config.system import BYTES_PER_ELEMENT
from imac.system.cpu.cores import (
    BIAS_BYTES,
    PRECISIONS,
    SOURCED_FIELDS,
    Precision,
    check_precision,
    list_presets,
    load_core,
)
from imac.system.cpu.cost import ENERGY_COMPONENTS, CpuCost, estimate, lane_utilization, layer_cost, memory_level
from imac.system.cpu.measure import (
    check_against_pytorch,
    measure_dispatch_overhead,
    measure_layers,
    ratio_table,
)
from imac.system.cpu.workload import (
    REQUANT_OPS,
    SIGMOID_OPS,
    TANH_OPS,
    LayerWork,
    Workload,
    mlp_workload,
    model_workload,
)

__all__ = [
    "BIAS_BYTES", "BYTES_PER_ELEMENT", "ENERGY_COMPONENTS", "H45_SOURCE", "PRECISIONS", "REQUANT_OPS",
    "SCALING_RULE", "SIGMOID_OPS", "SOURCED_FIELDS", "TANH_OPS", "CpuCoreSpec", "CpuCost", "LayerWork",
    "Precision", "Workload", "check_against_pytorch", "check_precision", "estimate", "lane_utilization",
    "layer_cost", "list_presets", "load_core", "measure_dispatch_overhead", "measure_layers", "memory_level",
    "mlp_workload", "model_workload", "ratio_table", "scale_energy", "sram_energy_45nm",
]
