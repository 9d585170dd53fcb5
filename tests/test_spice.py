"""The ngspice wrapper: rawfile parser, checked runner, missing binary, timeouts, model cards."""

from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from imac import ngspice as spice
from imac.errors import ConfigError, ImacError, ModelCardNotFoundError, SpiceError, SpiceNotFoundError
from imac.ngspice import (
    SpiceResult,
    find_model_card,
    ngspice_available,
    ngspice_executable,
    parse_ascii_raw,
    run_ngspice,
)

# -- rawfile parser (hand-written files in ngspice's ASCII layout) -------------------------

RAW_OP = textwrap.dedent(
    """\
    Title: * tiny divider
    Date: Sat Nov 28 13:30:49  2026
    Plotname: Operating Point
    Flags: real
    No. Variables: 2
    No. Points: 1
    Variables:
    \t0\tV(OUT_0)\tvoltage
    \t1\ti(v1)\tcurrent
    Values:
     0\t4.000000000000000e-01
    \t-2.500000000000000e-04

    """
)

RAW_DC = textwrap.dedent(
    """\
    Title: * sweep
    Date: Sat Nov 28 13:30:49  2026
    Plotname: DC transfer characteristic
    Flags: real
    No. Variables: 3
    No. Points: 3
    Variables:
    \t0\tv(v-sweep)\tvoltage
    \t1\tv(b)\tvoltage
    \t2\ti(v1)\tcurrent
    Values:
     0\t0.000000000000000e+00
    \t0.000000000000000e+00
    \t0.000000000000000e+00

     1\t5.000000000000000e-01
    \t2.500000000000000e-01
    \t-2.500000000000000e-04

     2\t1.000000000000000e+00
    \t5.000000000000000e-01
    \t-5.000000000000000e-04

    """
)


def test_parse_single_point_rawfile() -> None:
    plots = parse_ascii_raw(RAW_OP)
    assert len(plots) == 1
    plot = plots[0]
    assert set(plot) == {"v(out_0)", "i(v1)"}  # names are lower-cased
    np.testing.assert_array_equal(plot["v(out_0)"], [0.4])
    np.testing.assert_array_equal(plot["i(v1)"], [-2.5e-4])


def test_parse_multi_point_rawfile() -> None:
    (plot,) = parse_ascii_raw(RAW_DC)
    np.testing.assert_array_equal(plot["v(v-sweep)"], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(plot["v(b)"], [0.0, 0.25, 0.5])
    np.testing.assert_array_equal(plot["i(v1)"], [0.0, -2.5e-4, -5e-4])


def test_parse_several_plots_in_one_file() -> None:
    plots = parse_ascii_raw(RAW_DC + RAW_OP)
    assert len(plots) == 2
    assert plots[0]["v(b)"].shape == (3,)
    np.testing.assert_array_equal(plots[1]["v(out_0)"], [0.4])


def test_parse_values_on_one_line_per_point() -> None:
    text = RAW_DC.split("Values:")[0] + "Values:\n0 0 0 0\n1 0.5 0.25 -2.5e-4\n2 1 0.5 -5e-4\n"
    (plot,) = parse_ascii_raw(text)
    np.testing.assert_array_equal(plot["v(b)"], [0.0, 0.25, 0.5])


def test_parse_truncated_rawfile_raises() -> None:
    text = RAW_DC.rsplit(" 2\t", 1)[0]
    with pytest.raises(SpiceError, match="truncated"):
        parse_ascii_raw(text)


def test_parse_empty_or_complex_rawfile_raises() -> None:
    with pytest.raises(SpiceError, match="no plot"):
        parse_ascii_raw("")
    with pytest.raises(SpiceError, match="complex"):
        parse_ascii_raw(RAW_OP.replace("Flags: real", "Flags: complex"))


def test_spice_result_lookup() -> None:
    res = SpiceResult({"v(out)": np.array([1.0])}, log="")
    np.testing.assert_array_equal(res["V(OUT)"], [1.0])
    with pytest.raises(SpiceError, match="v\\(missing\\)"):
        res["v(missing)"]


# -- the runner ---------------------------------------------------------------------------

DIVIDER = textwrap.dedent(
    """\
    * divider
    V1 a 0 DC 1
    R1 a b 1k
    R2 b 0 3k
    .control
    set filetype=ascii
    op
    write out.raw v(b)
    quit
    .endc
    .end
    """
)


@pytest.mark.spice
def test_run_ngspice_operating_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    res = run_ngspice(DIVIDER, timeout_s=60)
    assert res["v(b)"][0] == pytest.approx(0.75, rel=1e-9)
    assert "ngspice" in res.log.lower()
    assert res.workdir is None
    assert list(tmp_path.iterdir()) == []  # the temp directory was removed


@pytest.mark.spice
def test_run_ngspice_keep_and_workdir(tmp_path: Path) -> None:
    res = run_ngspice(DIVIDER, keep=True, workdir=tmp_path / "run")
    assert res.workdir == tmp_path / "run"
    assert (tmp_path / "run" / "circuit.cir").read_text() == DIVIDER
    assert (tmp_path / "run" / "out.raw").is_file()
    assert (tmp_path / "run" / "ngspice.log").is_file()


BROKEN = {
    "unknown-model": "* bad model\nV1 a 0 DC 1\nM1 a a 0 0 nosuchmodel w=1u l=1u\n",
    "floating-node": "* floating\nV1 a 0 DC 1\nR1 b c 1k\n",
    "unknown-subckt": "* bad subckt\nV1 a 0 DC 1\nX1 a 0 nosubckt\n",
    "missing-include": '* bad include\nV1 a 0 DC 1\n.include "/no/such/card.pm"\n',
    "bad-value": "* bad value\nV1 a 0 DC 1\nR1 a 0 abc\n",
}


@pytest.mark.spice
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_netlist_raises_and_leaves_no_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    netlist = BROKEN[case] + ".control\nset filetype=ascii\nop\nwrite out.raw v(a)\nquit\n.endc\n.end\n"
    with pytest.raises(SpiceError) as exc:
        run_ngspice(netlist, timeout_s=60)
    err = exc.value
    assert err.log_path is None  # the log went with the temp folder: no path to a missing file
    assert "ngspice.log" not in str(err)
    assert len(str(err).split(":", 1)[1].strip()) > 5  # the log's own words are quoted instead
    assert list(tmp_path.iterdir()) == []  # nothing left in the temp dir
    if case == "floating-node":
        # ngspice exits 0 and writes a rawfile here; only the log scan catches the failure
        assert "singular matrix" in str(err).lower()


@pytest.mark.spice
@pytest.mark.parametrize("case", ["bad-value", "floating-node"])
def test_broken_netlist_in_a_given_workdir_names_its_log(tmp_path: Path, case: str) -> None:
    netlist = BROKEN[case] + ".control\nset filetype=ascii\nop\nwrite out.raw v(a)\nquit\n.endc\n.end\n"
    with pytest.raises(SpiceError) as exc:
        run_ngspice(netlist, timeout_s=60, workdir=tmp_path / "run")
    log = Path(str(exc.value.log_path))
    assert str(log) in str(exc.value) and log.is_file() and log.stat().st_size > 0
    assert (log.parent / "circuit.cir").read_text() == netlist


@pytest.mark.spice
def test_netlist_that_writes_nothing_raises(tmp_path: Path) -> None:
    netlist = "* no output\nV1 a 0 DC 1\nR1 a 0 1k\n.control\nop\nquit\n.endc\n.end\n"
    with pytest.raises(SpiceError, match="no results") as exc:
        run_ngspice(netlist, workdir=tmp_path)
    assert str(tmp_path / "ngspice.log") in str(exc.value)


@pytest.mark.spice
def test_timeout_raises_spice_error(tmp_path: Path) -> None:
    # a transient of ~1e9 time steps: far longer than the timeout
    netlist = textwrap.dedent(
        """\
        * endless
        V1 a 0 SIN(0 1 1e9)
        R1 a b 1k
        C1 b 0 1p
        .control
        set filetype=ascii
        tran 1e-15 1e-3 0 1e-15
        write out.raw v(b)
        quit
        .endc
        .end
        """
    )
    with pytest.raises(SpiceError, match="did not finish") as exc:
        run_ngspice(netlist, timeout_s=1.0, workdir=tmp_path)
    assert exc.value.log_path == str(tmp_path / "ngspice.log")


# -- a missing ngspice ---------------------------------------------------------------------


def _hide_ngspice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMAC_NGSPICE", str(tmp_path / "no" / "such" / "ngspice"))
    monkeypatch.setenv("PATH", "")


def test_missing_ngspice_raises_with_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide_ngspice(monkeypatch, tmp_path)
    assert not ngspice_available()
    with pytest.raises(SpiceNotFoundError, match=r"apt-get install -y ngspice"):
        ngspice_executable()
    with pytest.raises(SpiceNotFoundError, match=r"apt-get install -y ngspice") as exc:
        run_ngspice(DIVIDER, workdir=tmp_path / "run")
    assert isinstance(exc.value, SpiceError)
    assert isinstance(exc.value, ImacError)
    assert not (tmp_path / "run").exists()  # nothing was written before the check


def test_missing_ngspice_without_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAC_NGSPICE", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(SpiceNotFoundError, match="IMAC_NGSPICE"):
        ngspice_executable()


def test_imac_ngspice_override_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "my-ngspice"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAC_NGSPICE", str(fake))
    monkeypatch.setenv("PATH", "")
    assert ngspice_executable() == str(fake)
    assert ngspice_available()


def test_fake_ngspice_that_fails_gives_spice_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "ngspice"
    fake.write_text("#!/bin/sh\necho 'fatal: out of luck' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAC_NGSPICE", str(fake))
    with pytest.raises(SpiceError, match="status 3") as exc:
        run_ngspice(DIVIDER, workdir=tmp_path / "run")
    # the fake wrote no log: the message quotes what it said instead of naming a missing file
    assert "ngspice.log" not in str(exc.value) and exc.value.log_path is None
    assert "out of luck" in str(exc.value)


def test_bin_false_and_a_directory_as_ngspice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMAC_NGSPICE", "/bin/false")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SpiceError, match="status 1") as exc:
        run_ngspice(DIVIDER)
    assert exc.value.log_path is None and list(tmp_path.iterdir()) == []
    monkeypatch.setenv("IMAC_NGSPICE", str(tmp_path))
    with pytest.raises(SpiceNotFoundError, match="not an executable file"):
        run_ngspice(DIVIDER)


def test_spice_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from imac.ngspice import spice_timeout_s

    assert spice_timeout_s(300.0) == 300.0
    monkeypatch.setenv("IMAC_SPICE_TIMEOUT", "12.5")
    assert spice_timeout_s(300.0) == 12.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv("IMAC_SPICE_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="IMAC_SPICE_TIMEOUT"):
            spice_timeout_s(300.0)


@pytest.mark.spice
def test_interrupt_kills_ngspice_and_removes_its_temp_folder(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """An interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) while ngspice runs: the
    process group is killed and the temp folder removed."""
    import signal
    import threading

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    endless = ("* endless\nV1 a 0 SIN(0 1 1e9)\nR1 a b 1k\nC1 b 0 1p\n.control\nset filetype=ascii\n"
               "tran 1e-15 1e-3 0 1e-15\nwrite out.raw v(b)\nquit\n.endc\n.end\n")
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_ngspice(endless, timeout_s=60)
    finally:
        timer.cancel()
    assert list(tmp_path.iterdir()) == []
    out = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert out.stdout.strip() == "", "ngspice outlived the interrupt"


def test_stale_temp_folders_of_dead_processes_are_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from imac.ngspice import remove_stale_temp_dirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"imac-spice-{dead.pid}-abc").mkdir()
    (tmp_path / f"imac-net-{dead.pid}-abc").mkdir()
    live = tmp_path / f"imac-spice-{os.getpid()}-xyz"
    live.mkdir()
    other = tmp_path / "imac-spice-notapid"
    other.mkdir()
    remove_stale_temp_dirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_error_line_in_log_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Exit status 0 is not enough: an error in the log fails the run, naming the line."""
    fake = tmp_path / "ngspice"
    # ngspice -b -o LOG CIR: write a log with an error and a rawfile, exit 0
    fake.write_text(
        "#!/bin/sh\n"
        'printf "Circuit: x\\nError: unknown subckt: xbad\\n" > "$3"\n'
        f"cat > out.raw <<'EOF'\n{RAW_OP}EOF\n"
        "exit 0\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("IMAC_NGSPICE", str(fake))
    with pytest.raises(SpiceError, match="unknown subckt"):
        run_ngspice(DIVIDER, workdir=tmp_path / "run")


# -- model cards ---------------------------------------------------------------------------


def test_find_model_card_error_lists_the_places_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("IMAC_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    name = "no_such_card.pm"
    with pytest.raises(ModelCardNotFoundError) as exc:
        find_model_card(name=name)
    assert str(data_dir / "spice" / name) in str(exc.value) and "only there" in str(exc.value)
    monkeypatch.delenv("IMAC_DATA_DIR")
    with pytest.raises(ModelCardNotFoundError) as exc:
        find_model_card(name=name)
    msg = str(exc.value)
    repo_root = Path(spice.__file__).resolve().parents[2]
    assert str(repo_root.parent / "shared" / "data" / "spice" / name) in msg
    assert str(tmp_path.parent / "shared" / "data" / "spice" / name) in msg
    assert "IMAC_DATA_DIR" in msg
    assert isinstance(exc.value, FileNotFoundError)


def test_find_model_card_explicit(tmp_path: Path) -> None:
    card = tmp_path / "card.pm"
    card.write_text("* card\n")
    assert find_model_card(card) == card
    with pytest.raises(ModelCardNotFoundError, match=r"missing\.pm"):
        find_model_card(tmp_path / "missing.pm")


def test_find_model_card_through_imac_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "spice").mkdir()
    card = tmp_path / "spice" / "mine.pm"
    card.write_text("* card\n")
    monkeypatch.setenv("IMAC_DATA_DIR", str(tmp_path))
    assert find_model_card(name="mine.pm") == card


def test_default_model_card_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAC_DATA_DIR", raising=False)
    shipped = Path(spice.__file__).resolve().parents[2].parent / "shared/data/spice/ptm22hp.pm"
    if not shipped.is_file():
        pytest.skip(f"no model card at {shipped} in this checkout")
    card = find_model_card()
    assert card == shipped
    assert "nmos_hp" in card.read_text().lower()


@pytest.mark.spice
def test_ngspice_is_available_when_marked() -> None:
    assert ngspice_available()
