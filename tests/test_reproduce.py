"""`imac reproduce --quick`: the main job's run directory, its tables, and its refusal to half-write."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imac.errors import OutputExistsError
from imac.experiments import reproduce as rep

EXPECTED_FILES = ("report.md", "results.json", "config.yaml", "published_vs_ours.csv", "savings.csv",
                  "subarray_sweep.csv", "mlp_comparison.csv", "neuron_spice_vs_fit.png", "energy_breakdown.png",
                  "accuracy_vs_subarray.png", "savings_vs_core.png")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("reproduce") / "run"
    res = rep.run_reproduce(out, quick=True)
    return out, res


def test_quick_run_writes_every_output(quick_run: tuple[Path, dict]) -> None:
    out, res = quick_run
    for name in EXPECTED_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".run.")], "temp folder left behind"
    assert json.loads((out / "results.json").read_text())["mode"] == "quick"
    assert res["mode"] == "quick"


def test_report_has_every_published_target_side_by_side(quick_run: tuple[Path, dict]) -> None:
    out, _ = quick_run
    report = (out / "report.md").read_text()
    assert "| target | published | ours | source |" in report
    for target, published, _ in rep.PUBLISHED.values():
        assert f"| {target} | {published} |" in report
    rows = list(csv.DictReader((out / "published_vs_ours.csv").open()))
    assert len(rows) == len(rep.PUBLISHED) and all(r["ours"] for r in rows)
    assert "Quick mode" in report and "Named calibrations" in report


def test_savings_cover_every_model_core_precision_and_energy_model(quick_run: tuple[Path, dict]) -> None:
    out, res = quick_run
    rows = list(csv.DictReader((out / "savings.csv").open()))
    models = {r["model"] for r in rows}
    assert models == set(rep.TRAINED_CNNS) | set(rep.FULL_WIDTH)
    assert len(rows) == len(models) * len(rep.CORES) * len(rep.PRECISIONS) * len(rep.ENERGY_MODELS)
    for r in rows:
        e_cpu, e_sys = float(r["energy_cpu_only_j"]), float(r["energy_cpu_imac_j"])
        assert float(r["energy_saving"]) == pytest.approx(1 - e_sys / e_cpu)
        # IMAC can at best remove the FC layers' share of the CPU-only energy
        assert float(r["energy_saving"]) <= float(r["fc_share_of_cpu_only_energy"]) + 1e-12
    lenet = res["systems"]["lenet-mnist"]["fp32"]["cortex-a76"]["bottom-up"]
    assert lenet["energy_saving"] > 0
    assert lenet["n_subarrays"] == 67


def test_cpu_imac_accuracy_within_budget_for_lenet(quick_run: tuple[Path, dict]) -> None:
    _, res = quick_run
    for precision in rep.PRECISIONS:
        s = res["systems"]["lenet-mnist"][precision]["cortex-a76"]["bottom-up"]
        assert s["fidelity"] == "circuit"
        assert s["accuracy_drop_points"] <= 1.5, (precision, s["accuracy_cpu_only"], s["accuracy_cpu_imac"])


def test_partitioning_and_sweep(quick_run: tuple[Path, dict]) -> None:
    _, res = quick_run
    assert res["partitioning"]["hpar"] == [13, 4, 3] and res["partitioning"]["vpar"] == [4, 3, 1]
    sweep = res["subarray_sweep"]["rows"]
    assert [s["size"] for s in sweep] == [16, 32, 64, 128, None]
    assert [s["n_subarrays"] for s in sweep][:2] == [262, 67] and sweep[-1]["n_subarrays"] == 3


def test_existing_run_directory_is_refused_and_untouched(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        rep.run_reproduce(out, quick=True)
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_a_failing_study_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("study failed")

    monkeypatch.setattr(rep, "_trained_systems", boom)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="study failed"):
        rep.run_reproduce(out, quick=True)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_an_existing_directory_with_a_clear_error(tmp_path: Path) -> None:
    from imac.cli import app

    out = tmp_path / "run"
    out.mkdir()
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out)])
    assert result.exit_code != 0
    assert isinstance(result.exception, OutputExistsError)


def test_cli_refuses_a_bad_config(tmp_path: Path) -> None:
    from imac.cli import app
    from imac.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("subarray:\n  rows: -4\n")
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(tmp_path / "run"), "-c", str(bad)])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert not (tmp_path / "run").exists()
