"""The base of every spec: validation rules, bounds, safe YAML reading, one-line errors.

All quantities are SI (ohm, volt, metre, farad, second) unless a field says otherwise.  Unknown
keys are refused and every impossible value is rejected at load time; the error message carries
the dotted field path (``wires.width_m``) so a user can find the line in their YAML file.

A spec may *derive* some of its values (the neuron's MTJs from the MTJ spec, a CPU core's
energies from its node and supply): a derived field is filled in when the user leaves it out, and
the spec remembers which fields it derived (:attr:`Spec.derived`), so that ``imac config show``
can mark them and a dump for re-use leaves them out (they follow the values they come from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imac.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"

# Bounds that later stages rely on, checked here so that a refusal names the dotted field path.
V_DD_MIN_V, V_DD_MAX_V = 0.05, 5.0  # any CMOS supply people study; the solvers assume a few volts at most
MAX_ARRAY_SIDE = 4096  # largest subarray side the mapping and solvers accept
MIN_RESISTANCE_OHM = 1e-6  # below this a resistor is numerically a short: use 0 (ideal) where allowed
MAX_CONFIG_BYTES = 1 << 20  # a spec file is a few KB; anything larger is not a config
# what a SPICE model name may look like: it is written into netlists, so nothing else passes
SPICE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*$"


class Spec(BaseModel):
    """Base of all specs: frozen, unknown keys forbidden, NaN and infinity refused, and no
    boolean where a number is expected (pydantic would read ``rows: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    # field (or dotted path below this spec) -> why and from what it was derived
    _derived: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (bool, np.bool_)) and info.field_name is not None:
            if cls.model_fields[info.field_name].annotation is not bool:
                raise ValueError(f"expected a number, got the boolean {value}")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _derive_then_validate(cls, data: Any, handler: Any) -> Any:
        derived: dict[str, str] = {}
        if isinstance(data, dict):
            data = cls.derive(dict(data), derived)
        inst = handler(data)
        if derived:
            inst._derived = {**inst._derived, **derived}
        return inst

    @classmethod
    def derive(cls, data: dict[str, Any], derived: dict[str, str]) -> dict[str, Any]:
        """Fill in the values this spec derives that ``data`` leaves out (or None), recording
        each in ``derived`` (field -> from what).  A value that is bad, or that a derivation
        needs and is bad, is left as it is: the validation refuses it with its dotted path."""
        return data

    @property
    def derived(self) -> dict[str, str]:
        """Dotted paths (below this spec) of every derived value, with where it comes from."""
        out = dict(self._derived)
        for name in type(self).model_fields:
            value = getattr(self, name)
            children = value if isinstance(value, tuple) else (value,)
            for k, child in enumerate(children):
                if isinstance(child, Spec):
                    where = f"{name}.{k}" if isinstance(value, tuple) else name
                    out.update({f"{where}.{p}": why for p, why in child.derived.items()})
        return out


def _resistance_or_zero(value: float | None, what: str) -> float | None:
    if value is not None and 0 < value < MIN_RESISTANCE_OHM:
        raise ValueError(f"{what} below {MIN_RESISTANCE_OHM:g} ohm is a short; use 0 for an ideal one")
    return value


def check_netlist_path(text: str) -> str:
    """``text`` if it can be written between double quotes on a netlist line, else ConfigError.

    A path reaches ngspice as ``.include "PATH"``: a quote, a newline or another control
    character would let a config file add netlist lines (and a ``.control`` block runs shell
    commands), so those are refused rather than escaped.
    """
    bad = sorted({c for c in text if c == '"' or ord(c) < 32 or ord(c) == 127})
    if bad or not text:
        shown = ", ".join(repr(c) for c in bad) or "an empty path"
        raise ConfigError(f"path {text[:80]!r} cannot go into a SPICE netlist (contains {shown})")
    return text


def check_spice_name(text: str) -> str:
    """``text`` if it is a plain SPICE identifier (``SPICE_NAME_PATTERN``), else ConfigError."""
    import re

    if not isinstance(text, str) or not re.fullmatch(SPICE_NAME_PATTERN, text) or len(text) > 64:
        raise ConfigError(f"{str(text)[:80]!r} is not a SPICE model name (letters, digits, '_' and '.', "
                          "starting with a letter or '_')")
    return text


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_validation_error(err: ValidationError, source: str) -> str:
    """One line: every bad field by its dotted path, what is wrong, and what was given."""
    parts = []
    errors = err.errors()
    for e in errors[:10]:
        # a key may hold any character: quoted when it is not plain, so the message stays one line
        path = ".".join(str(p) if str(p).isprintable() else repr(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{path}: {msg} (got {_short_repr(e.get('input'))})")
    if len(errors) > 10:
        parts.append(f"... and {len(errors) - 10} more")
    return f"invalid configuration in {source}: " + "; ".join(parts)


class _StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would let the later one silently win) and
    aliases (``*name``: they allow a kilobyte file to expand into gigabytes, and a spec never
    needs them)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in an imac config", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: SafeLoader itself refuses it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_short_repr(key)} (first given on line {first + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The data of a YAML spec file, or ConfigError naming the file and what is wrong with it:
    not a regular file, too large, not UTF-8 text, malformed, duplicate keys or aliases."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1]
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {path}: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}): not a YAML configuration") from None
    if "\x00" in text:
        raise ConfigError(f"{path} contains NUL bytes: not a YAML configuration")
    try:
        return yaml.load(text, Loader=_StrictYamlLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        where = f" line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}" if err.problem_mark else ""
        what = " ".join(str(err.problem or err.context or "unreadable").split())
        raise ConfigError(f"malformed YAML in {path}{where}: {what[:300]}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"malformed YAML in {path}: {' '.join(str(err).split())[:300]}") from None
    except (ValueError, TypeError, OverflowError) as err:  # a tag or scalar that YAML cannot build
        raise ConfigError(f"malformed YAML in {path}: {' '.join(str(err).split())[:300]}") from None
    except RecursionError:
        raise ConfigError(f"malformed YAML in {path}: nested too deeply") from None


def parse_spec(data: Any, cls: type[Spec] | None = None, source: str = "<dict>") -> Any:
    """Validate a plain mapping into ``cls`` (default: the whole tree,
    :class:`imac.config.ImacSpec`); raise :class:`ConfigError` naming each bad field."""
    if cls is None:
        from imac.config.tree import ImacSpec

        cls = ImacSpec
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
