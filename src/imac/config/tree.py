"""The one spec tree: everything a result depends on, from the MTJ to the CPU core.

``ImacSpec`` holds the device, synapse, variation, wires, amplifier, neuron, subarray, cost,
interface, CPU core and baselines.  There is one V_DD (``v_dd`` at the top): the neuron, the
arrays and the interface take it from there.  Values that physics derives are derived, each
overridable by giving it: the synapse levels and the neuron's MTJs from the MTJ (at their read
voltages, so the TMR bias dependence acts), the interface and CPU energies from their node and
supply.  :func:`show_spec` prints the resolved tree with the derived values marked;
:func:`dump_spec` writes only what was given, so a derived value keeps following its source.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from imac.config.base import (
    MIN_RESISTANCE_OHM,
    PRESET_DIR,
    V_DD_MAX_V,
    V_DD_MIN_V,
    Spec,
    _short_repr,
    parse_spec,
    read_yaml,
)
from imac.config.cores import core_data
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
from imac.config.system import BaselineSpec, CpuCoreSpec, InterfaceSpec
from imac.errors import ConfigError

DEFAULT_CORE = "cortex-a76"
V_DD_USERS = ("neuron", "subarray", "interface")  # sections that take the one V_DD


def _as_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return {}
    if isinstance(value, Spec):
        return value.model_dump()
    return dict(value) if isinstance(value, dict) else None


class ImacSpec(Spec):
    """The whole design point: IMAC hardware, the CPU core beside it, the interface between them
    and the baselines it is compared with."""

    v_dd: float = Field(0.8, ge=V_DD_MIN_V, le=V_DD_MAX_V,
                        description="The supply, V: neuron supply, input swing +-V_DD and bias-line voltage of the "
                        "arrays, interface swing (SYSTEM.md sec. 3).")
    mtj: MTJSpec = MTJSpec()
    synapse: SynapseSpec = SynapseSpec()
    variation: VariationSpec = VariationSpec()
    wires: WireSpec = WireSpec()
    amplifier: AmplifierSpec = AmplifierSpec()
    neuron: NeuronSpec = NeuronSpec()
    subarray: SubarraySpec = SubarraySpec()
    cost: CostSpec = CostSpec()
    interface: InterfaceSpec = InterfaceSpec()
    cpu: CpuCoreSpec = Field(None, validate_default=True,  # derived: the preset
                             description=f"The mobile CPU core: a preset name, a YAML file, or fields "
                             f"(optionally with `preset:`); default {DEFAULT_CORE}.")
    baselines: BaselineSpec = BaselineSpec()

    @classmethod
    def derive(cls, data: dict[str, Any], derived: dict[str, str]) -> dict[str, Any]:
        return _resolve_tree(data, derived)


def _resolve_tree(data: dict[str, Any], derived: dict[str, str]) -> dict[str, Any]:
    """Fill the derived values of a raw spec mapping in place of the absent ones (recording
    each in ``derived``); refuse a second V_DD.  Bad values are left for validation to refuse
    with their dotted paths (what derives from a bad value is left out, not guessed)."""
    cpu = data.get("cpu")
    if cpu is None or isinstance(cpu, (str, dict)):
        data["cpu"] = core_data(DEFAULT_CORE if cpu is None else cpu)
        if cpu is None or isinstance(cpu, str):
            derived["cpu"] = f"preset {DEFAULT_CORE if cpu is None else cpu}"
    try:
        v_dd = float(data.get("v_dd", ImacSpec.model_fields["v_dd"].default))
    except (TypeError, ValueError, OverflowError):
        return data
    for section in V_DD_USERS:
        sub = _as_dict(data.get(section))
        if sub is None:
            continue
        if "v_dd" in sub and sub["v_dd"] is not None and sub["v_dd"] != v_dd:
            raise ValueError(f"{section}.v_dd = {sub['v_dd']!r} differs from v_dd = {v_dd!r}: V_DD is set once, "
                             "as `v_dd` at the top of the spec")
        data[section] = {**sub, "v_dd": v_dd}
        derived[f"{section}.v_dd"] = "v_dd"
    iface, cost = _as_dict(data.get("interface")), _as_dict(data.get("cost"))
    if iface is not None and cost is not None and iface.get("settle_bits") is None:
        bits = cost.get("settle_bits", CostSpec.model_fields["settle_bits"].default)
        data["interface"] = {**iface, "settle_bits": bits}  # one settling criterion unless given
        derived["interface.settle_bits"] = "cost.settle_bits"
    try:
        mtj = MTJSpec.model_validate(_as_dict(data.get("mtj")) or {})
    except (ValidationError, TypeError):
        return data
    if mtj.r_p_ohm < MIN_RESISTANCE_OHM:
        raise ValueError(f"the MTJ's R_P = RA/area = {mtj.r_p_ohm:g} ohm is below {MIN_RESISTANCE_OHM:g} ohm: "
                         "check mtj.ra_ohm_m2, mtj.length_m and mtj.width_m")
    neuron = _as_dict(data.get("neuron"))
    if neuron is not None and neuron.get("mtj") is None:
        data["neuron"] = {**neuron, "mtj": mtj}
        derived["neuron.mtj"] = "mtj (the array's MTJ)"
    syn = _as_dict(data.get("synapse"))
    if syn is not None and syn.get("r_low_ohm") is None and syn.get("r_high_ohm") is None:
        data["synapse"] = {**syn, "r_low_ohm": mtj.r_p_ohm, "r_high_ohm": mtj.r_ap_at(v_dd)}
        derived["synapse.r_low_ohm"] = "R_P = RA/area of mtj"
        derived["synapse.r_high_ohm"] = "R_AP of mtj at the read voltage V_DD"
    return data


def load_spec(path_or_preset: str | Path = "paper", cls: type[Spec] = ImacSpec) -> Any:
    """Load a spec from a YAML file or a preset name (``paper``) in the package's configs."""
    text = str(path_or_preset)
    if not text or "\x00" in text:
        raise ConfigError(f"invalid configuration name {_short_repr(text)}")
    path = Path(text)
    if not path.exists() and re.fullmatch(r"[A-Za-z0-9_-]+", text):
        path = PRESET_DIR / f"{text}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
            raise ConfigError(f"unknown preset {text!r}; known presets: {', '.join(known)}")
    return parse_spec(read_yaml(path), cls, source=str(path))


def _exclude(paths: list[str]) -> dict[str, Any]:
    """A pydantic ``exclude`` mapping for dotted paths (tuple items by index)."""
    out: dict[str, Any] = {}
    for p in paths:
        node: dict[Any, Any] = out  # keys: field names, or indexes of tuple items
        parts = p.split(".")
        for part in parts[:-1]:
            key: Any = int(part) if part.isdigit() else part
            nxt = node.setdefault(key, {})
            if nxt is True:
                break
            node = nxt
        else:
            last = parts[-1]
            node[int(last) if last.isdigit() else last] = True
    return out


def user_dict(spec: Spec) -> dict[str, Any]:
    """The spec as the user would write it: every derived value left out (a whole derived CPU
    preset becomes its name), so that changing a source value moves what derives from it."""
    derived = spec.derived
    data = spec.model_dump(mode="json", exclude=_exclude(list(derived)))
    if isinstance(spec, ImacSpec) and "cpu" in derived:
        data["cpu"] = derived["cpu"].removeprefix("preset ")
    return data


def dump_spec(spec: Spec) -> str:
    """YAML text of a spec as given (round-trips through :func:`parse_spec`; derived values left
    out, see :func:`show_spec` for the resolved tree)."""
    return yaml.safe_dump(user_dict(spec), sort_keys=False, allow_unicode=True, width=110)


def show_spec(spec: Spec, computed: dict[str, tuple[Any, str]] | None = None) -> str:
    """The whole resolved tree as YAML, each derived value followed by ``# derived: <from what>``.

    ``computed`` adds values that a later stage derives from a left-out field (dotted path ->
    (value, from what)), e.g. the wire resistances that the circuit model computes."""
    derived = dict(spec.derived)
    values = spec.model_dump(mode="json")
    for path, (value, why) in (computed or {}).items():
        node: Any = values
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        if node.get(last) is None:
            node[last] = value
            derived[path] = why
    lines: list[str] = []

    def scalar(v: Any) -> str:
        return yaml.safe_dump(v, default_flow_style=True, width=10**6, allow_unicode=True).strip().removesuffix(
            "\n...").removesuffix("...").strip()

    def emit(obj: Any, path: str, indent: str) -> None:
        items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj))
        for k, v in items:
            p = f"{path}.{k}" if path else str(k)
            key = f"{indent}- " if isinstance(obj, list) else f"{indent}{k}:"
            note = f"  # derived: {derived[p]}" if p in derived else ""
            if isinstance(v, (dict, list)) and v:
                if isinstance(obj, list):
                    lines.append(f"{indent}-{note}")
                else:
                    lines.append(f"{key}{note}")
                emit(v, p, indent + "  ")
            else:
                sep = "" if isinstance(obj, list) else " "
                lines.append(f"{key}{sep}{scalar(v)}{note}")

    emit(values, "", "")
    return "\n".join(lines) + "\n"


def with_overrides(spec: ImacSpec, overrides: dict[str, Any], source: str = "overrides") -> ImacSpec:
    """A new spec with dotted-path values replaced (``{"mtj.tmr": 1.5}``), derived values derived
    again from the changed tree; unknown paths and bad values are refused with their path."""
    data = user_dict(spec)
    for dotted, value in overrides.items():
        node: Any = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if isinstance(node.get(part), str) and part == "cpu":  # a preset name: expand to its fields
                node[part] = {"preset": node[part]}
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {dotted}: {part} is not a section")
        node[parts[-1]] = value
    return parse_spec(data, ImacSpec, source=source)


def spec_hash(spec: Spec, *parts: str) -> str:
    """SHA-256 (16 hex digits) of the resolved values of ``parts`` (dotted paths, e.g.
    ``"neuron"``, ``"mtj"``) or of the whole spec: what names a derived artefact's design."""
    data = spec.model_dump(mode="json")
    chosen: dict[str, Any] = {}
    for p in parts or tuple(data):
        node: Any = data
        for k in p.split("."):
            node = node[k]
        chosen[p] = node
    text = json.dumps(chosen, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
