"""Typed, validated specs for everything a result depends on, loadable from YAML (one tree:
:class:`ImacSpec`).  See :mod:`imac.config.tree` for how values are derived and shown."""

from imac.config.base import (
    MAX_ARRAY_SIDE,
    MAX_CONFIG_BYTES,
    MIN_RESISTANCE_OHM,
    PRESET_DIR,
    SPICE_NAME_PATTERN,
    V_DD_MAX_V,
    V_DD_MIN_V,
    Spec,
    check_netlist_path,
    check_spice_name,
    parse_spec,
    read_yaml,
)
from imac.config.cores import core_data, core_preset_names
from imac.config.hardware import (
    AmplifierSpec,
    CostSpec,
    MTJSpec,
    NeuronSpec,
    SubarraySpec,
    SynapseSpec,
    VariationSpec,
    WireSpec,
)
from imac.config.system import BaselineSpec, CacheLevelSpec, CpuCoreSpec, InterfaceSpec
from imac.config.tree import (
    DEFAULT_CORE,
    ImacSpec,
    dump_spec,
    load_spec,
    show_spec,
    spec_hash,
    user_dict,
    with_overrides,
)

__all__ = [
    "DEFAULT_CORE", "MAX_ARRAY_SIDE", "MAX_CONFIG_BYTES", "MIN_RESISTANCE_OHM", "PRESET_DIR", "SPICE_NAME_PATTERN",
    "V_DD_MAX_V", "V_DD_MIN_V", "AmplifierSpec", "BaselineSpec", "CacheLevelSpec", "CostSpec", "CpuCoreSpec",
    "ImacSpec", "InterfaceSpec", "MTJSpec", "NeuronSpec", "Spec", "SubarraySpec", "SynapseSpec", "VariationSpec",
    "WireSpec", "check_netlist_path", "check_spice_name", "core_data", "core_preset_names", "dump_spec",
    "load_spec", "parse_spec", "read_yaml", "show_spec", "spec_hash", "user_dict", "with_overrides",
]
