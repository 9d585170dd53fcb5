"""Shared pieces of the fuzz tier: settings from the environment, YAML documents for the spec
tree, odd Python values, and the one-line-error check.

Environment:

* ``IMAC_FUZZ_EXAMPLES``: examples per test (default: a small number, so that the whole tier
  stays well under a minute in ``make test``); ``make fuzz`` sets it large.
* ``IMAC_FUZZ_RANDOM=1``: draw new examples on every run (``make fuzz``); otherwise the tier is
  derandomized, so CI sees the same examples every time.
* ``IMAC_FUZZ_BUDGET_S``: wall-clock budget of one CLI example (default 2.5 s, 4 s in a long
  run); an argument vector that starts real work longer than this is interrupted (and must
  still clean up).
* ``IMAC_FUZZ_DB``: where a long run keeps the failing examples it found (default
  ``.hypothesis/fuzz``, git-ignored), so the next long run replays them first: a failure seen
  once under load is not lost with the run's output.  The derandomized tier keeps none.

Failures found: each test file keeps one reproducer per failure as a plain regression case.  A
failure reported but not yet fixed also gets a regular expression in the file's
``KNOWN_SIGNATURES`` (an example that hits it is discarded, so the fuzzer keeps looking for new
ones) and ``xfail(strict=True)`` on its reproducer; once src/ is fixed the reproducer XPASSes and
fails the run: remove the mark and the signature.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, Phase, reject, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import UnsatisfiedAssumption

from imac.config import PRESET_DIR, ImacSpec

MAX_MESSAGE_CHARS = 2000


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, "") or default))
    except ValueError:
        return default


def fuzz_settings(default_examples: int) -> settings:
    """Hypothesis settings of one fuzz test: bounded and derandomized unless a long run is asked."""
    long_run = _long_run()
    return settings(
        max_examples=_env_int("IMAC_FUZZ_EXAMPLES", default_examples),
        derandomize=not long_run,
        database=_database() if long_run else None,
        deadline=None,
        print_blob=True,
        # no explain phase: it traces every line of a failing example again and again (minutes
        # once torch runs under the tracer)
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
    )


def _database() -> DirectoryBasedExampleDatabase:
    # absolute now: the CLI examples run with the working directory in a folder of user files
    where = os.path.abspath(os.environ.get("IMAC_FUZZ_DB", "").strip() or ".hypothesis/fuzz")
    return DirectoryBasedExampleDatabase(where)


def _long_run() -> bool:
    return os.environ.get("IMAC_FUZZ_RANDOM", "").strip() not in ("", "0")


def budget_s() -> float:
    default = 4.0 if _long_run() else 2.5
    try:
        return float(os.environ.get("IMAC_FUZZ_BUDGET_S", "") or default)
    except ValueError:
        return default


def one_line_problem(message: str) -> str | None:
    """Why ``message`` is not one short line, or None when it is."""
    if not message.strip():
        return "empty message"
    if len(message.splitlines()) > 1:
        return f"message spans {len(message.splitlines())} lines"
    if len(message) > MAX_MESSAGE_CHARS:
        return f"message is {len(message)} characters long"
    if "Traceback" in message:
        return "message carries a traceback"
    return None


# -- the spec tree -------------------------------------------------------------------------------

DEFAULT_TREE: dict[str, Any] = ImacSpec().model_dump(mode="json")
SECTIONS = sorted(DEFAULT_TREE)


def spec_leaves() -> list[tuple[str, ...]]:
    """Dotted paths of every leaf of the default spec (walked from ``ImacSpec().model_dump()``)."""
    out: list[tuple[str, ...]] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        else:
            out.append(path)

    walk(ImacSpec().model_dump(), ())
    return out


LEAVES = spec_leaves()

# -- YAML scalars as text ------------------------------------------------------------------------

SPECIAL_TOKENS = [
    # NaN, infinities, huge and tiny, zero, negative
    ".nan", ".NaN", ".inf", "-.inf", "+.inf", "nan", "inf", "-inf", "NaN", "1e999", "-1e999", "1e308",
    "1.7976931348623157e308", "5e-324", "1e-300", "-1e-300", "1e-320", "0", "-0", "0.0", "-0.0", "1", "-1",
    "2", "3", "31", "32", "33", "4096", "4097", "100000", "1e12", "-1e12", "1e-12", "0.5", "0.999999",
    "1.0000001", str(10**400), "-" + str(10**400), "9" * 5000,
    # YAML 1.1 number spellings
    "0x7fffffffffffffff", "0o777", "0777", "0b101", "1_000", "1:30", "190:20:30.15", "+12", ".5", "1.", "1e3",
    # booleans and null in their YAML 1.1 spellings
    "true", "false", "True", "yes", "no", "on", "off", "y", "n", "~", "null", "Null", "''", '""',
    # other types
    "2001-12-14t21:59:43.10-05:00", "2002-12-14", "!!binary aGVsbG8=", "!!float 1", "!!int '3'", "!!str 1",
    "!!bool yes", "!!null ''", "!!timestamp 2001-01-01", "!!set {a, b}", "!!omap [a: 1]", "!!pairs [a: 1]",
    "!!python/object:os.system {}", "!!python/object/apply:os.system ['echo pwned']", "!!python/name:os.system",
    "!!python/tuple [1, 2]", "!!python/complex 1+2j", "!!python/bytes aGk=", "!foo bar",
    "!<tag:yaml.org,2002:int> 3", "!!map {a: 1}", "!!seq [1]", "!!int 1.5", "!!float abc",
    # collections and nesting
    "[]", "{}", "[1, 2, 3]", "{a: 1}", "[.nan]", "{x: {y: {z: 1}}}", "[" * 40 + "]" * 40,
    "[" * 3000 + "]" * 3000, "{a: " * 500 + "1" + "}" * 500, "? [a]\n  : 1",
    # strings that matter to a netlist or a terminal
    "nmos_HP", "pmos_HP", "'nmos_HP\n.control\nshell touch pwned\n.endc'", '"nmos_HP\\n.control"', '"\\x00"',
    '"\\u2028"', '"\\ud800"', '"\\x85"', '"a\\nb"', '"\\e[31m"', "'it''s'", "|\n    multi\n    line",
    ">\n    folded", '"' + "x" * 5000 + '"', "/etc/passwd", "../../etc/passwd", "spice/ptm22hp.pm", "'\t'",
    # malformed
    "*undefined", "&", "*", "%TAG", "---", "...", "@reserved", "`reserved", "\t1", "1 # comment", "- 1",
    "a: b", ": x", "[1, 2", "{a: 1", "'open", '"open', "!", "!!", "|", ">", "-", "?", ",",
]


def _float_token(x: float) -> str:
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    return repr(x)


control_text = st.text(alphabet=st.characters(max_codepoint=0x3000, exclude_categories=()), max_size=40)

scalar_tokens = st.one_of(
    st.sampled_from(SPECIAL_TOKENS),
    st.floats(allow_nan=True, allow_infinity=True).map(_float_token),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=-5, max_value=5000).map(str),
    control_text.map(json.dumps),  # double-quoted YAML: escapes, unicode, control characters
    st.text(max_size=30).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.text(max_size=20),  # raw text as a plain scalar (often not valid YAML at all)
    st.binary(max_size=40).map(lambda b: "!!binary " + base64.b64encode(b).decode()),
)


def _flow(value: Any) -> str:
    return json.dumps(value)


flow_collections = st.recursive(
    st.one_of(st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
              st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10,
).map(_flow)

value_tokens = st.one_of(scalar_tokens, scalar_tokens, scalar_tokens, flow_collections)


def _indent(token: str, spaces: int) -> str:
    """A (possibly multi-line) token placed after ``key: `` at ``spaces`` indentation."""
    lines = token.split("\n")
    return "\n".join([lines[0]] + [" " * spaces + ln for ln in lines[1:]])


def _key_tokens(default: Any) -> st.SearchStrategy[str]:
    keys = sorted(default) if isinstance(default, dict) and default else ["x"]
    return st.one_of(st.sampled_from(keys), st.sampled_from(keys), st.sampled_from(keys),
                     st.text(max_size=10).map(json.dumps), st.sampled_from(["1", "~", "true", "<<", "? [a]"]))


def _block(draw: st.DrawFn, default: Any, indent: int, anchors: list[str], depth: int) -> list[str]:
    """Lines of a block mapping shaped like ``default`` (a subtree of the spec) at ``indent``."""
    pad = " " * indent
    lines: list[str] = []
    for _ in range(draw(st.integers(min_value=0, max_value=6 if depth else 5))):
        key = draw(_key_tokens(default))
        child = default.get(key) if isinstance(default, dict) else None
        kind = draw(st.integers(0, 11))
        if isinstance(child, dict) and kind < 8 and depth < 4:  # a nested section
            anchor = ""
            if draw(st.integers(0, 5)) == 0:
                anchors.append(f"a{len(anchors)}")
                anchor = f" &{anchors[-1]}"
            lines.append(f"{pad}{key}:{anchor}")
            lines += _block(draw, child, indent + 2, anchors, depth + 1)
            continue
        if kind == 8:  # an alias to an earlier anchor, or a merge key
            target = draw(st.sampled_from(anchors)) if anchors else "nowhere"
            if draw(st.booleans()):
                lines.append(f"{pad}{key}: *{target}")
            else:
                lines += [f"{pad}{key}:", f"{pad}  <<: *{target}"]
            continue
        value = draw(value_tokens)
        if kind == 9:
            anchors.append(f"a{len(anchors)}")
            value = f"&{anchors[-1]} {value}"
        lines.append(f"{pad}{key}: {_indent(value, indent + 2)}")
        if draw(st.integers(0, 14)) == 0:  # a duplicate key
            lines.append(f"{pad}{key}: {_indent(draw(value_tokens), indent + 2)}")
    return lines


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    """Text of a YAML document shaped like a spec: valid sections and keys at every depth (and
    some invalid ones) with values of every kind; duplicate keys, anchors and aliases, tags, odd
    framing."""
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["%YAML 1.1\n---", "---", "# a comment", "\ufeff", "%YAML 1.2\n---",
                                           "--- !!map", "%TAG ! tag:evil.com,2000:\n---"])))
    lines += _block(draw, DEFAULT_TREE, 0, [], 0)
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.sampled_from(["---\nmtj: {}", "...", "--- 1", "- 1", "[1]", "mtj: {tmr: 3}"])))
    text = "\n".join(lines) + ("\n" if draw(st.booleans()) else "")
    if draw(st.integers(0, 9)) == 0:
        text = text.replace("\n  ", "\n\t")  # tabs for indentation
    return text


def leaf_yaml(path: tuple[str, ...], token: str) -> str:
    """A YAML document that sets the leaf at ``path`` to the text ``token`` and nothing else."""
    lines = [" " * (2 * i) + f"{k}:" for i, k in enumerate(path[:-1])]
    indent = 2 * (len(path) - 1)
    lines.append(" " * indent + f"{path[-1]}: {_indent(token, indent + 2)}")
    return "\n".join(lines) + "\n"


def _paper_bytes() -> bytes:
    return (PRESET_DIR / "paper.yaml").read_bytes()


@st.composite
def mutated_preset(draw: st.DrawFn) -> bytes:
    """The paper preset with a few bytes overwritten, inserted or deleted."""
    data = bytearray(_paper_bytes())
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        op = draw(st.integers(0, 2))
        if op == 0 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif pos < len(data):
            del data[pos : pos + draw(st.integers(1, 40))]
    return bytes(data)


config_file_bytes = st.one_of(
    yaml_documents().map(lambda s: s.encode("utf-8", "surrogatepass")),
    yaml_documents().map(lambda s: s.encode("utf-8", "surrogatepass")),
    yaml_documents().map(lambda s: s.encode("utf-8", "surrogatepass")),
    mutated_preset(),
    st.binary(max_size=200),
    st.sampled_from([b"", b"\x00", b"\xff\xfe", "\ufeffmtj: {}".encode(), b"\xef\xbb\xbf", b"mtj: {}\x00",
                     "mtj:\n  tmr: 3\n".encode("utf-16"), b"a: &a [*a]", b"x" * ((1 << 20) + 1)]),
)

# -- odd Python values for parse_spec ------------------------------------------------------------


def _odd_objects() -> list[Any]:
    import datetime as dt
    import fractions
    from decimal import Decimal
    from pathlib import Path

    import numpy as np

    return [
        float("nan"), float("inf"), -float("inf"), 1e308, 5e-324, -0.0, 10**400, -(10**400), 2**63, 2**64,
        True, False, None, "", " ", "1", "1e3", " 5 ", "0x10", "\u0661\u0662", "nan", "inf", "-inf", "NaN", "1_0",
        "true", "nmos_HP\n.control\nshell touch pwned\n.endc", "a" * 10_000, "\x00", "\ud800", b"1", b"\xff",
        bytearray(b"2"), complex(1, 2), Decimal("NaN"), Decimal("1e999"), Decimal("0.1"), fractions.Fraction(1, 3),
        Path("/etc/passwd"), Path(""), Path("a\nb"), dt.datetime(2001, 1, 1), dt.date(2001, 1, 1), dt.timedelta(1),
        [], {}, [1], {"a": 1}, (1,), {1}, frozenset(), range(3), object(), object, int, ...,
        np.float64("nan"), np.float32(1.5), np.int64(5), np.bool_(True), np.array([1.0]), np.array(2.0),
        {"x": {"y": {"z": 1}}}, [float("nan")], {1: 2}, {None: 1}, {(1, 2): 3},
    ]


odd_values = st.one_of(
    st.sampled_from(_odd_objects()),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


# -- known failures ------------------------------------------------------------------------------


@contextmanager
def known_failures_skipped(signatures: dict[str, str]) -> Iterator[None]:
    """Run a property check; a violation whose ``"Type: message"`` matches one of the regular
    expressions in ``signatures`` (a failure already reported and kept as an xfail regression
    case) discards the example instead of failing the fuzz test, so that the tier keeps looking
    for new failures.  Remove a signature once its failure is fixed."""
    try:
        yield
    except Exception as err:
        if isinstance(err, UnsatisfiedAssumption):
            raise
        text = f"{type(err).__name__}: {err}"
        if any(re.search(sig, text, re.DOTALL) for sig in signatures.values()):
            reject()
        raise
