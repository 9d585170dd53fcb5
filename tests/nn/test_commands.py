"""The nn commands of the real `imac` application."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import write_mnist
from imac.errors import ConfigError, DataError


@pytest.fixture
def app() -> typer.Typer:
    from imac.cli import app as imac_app

    return imac_app


def test_list_models(app: typer.Typer) -> None:
    res = CliRunner().invoke(app, ["list-models"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    names = [ln.split("\t")[0] for ln in lines]
    assert "lenet-mnist" in names and "vgg16-full-cifar10" in names
    assert all(("checkpoint" in ln) for ln in lines)


def test_train_and_evaluate_json(app: typer.Typer, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import imac.nn.train as T

    # the CLI trains on official-size data; let the tiny synthetic set through
    real_load = T._load
    monkeypatch.setattr(T, "_load", lambda d, s, dd, lim, strict=True: real_load(d, s, dd, lim,
                                                                                 False))
    data = write_mnist(tmp_path / "data" / "mnist", n_train=40, n_test=20).parent
    out = tmp_path / "m.pt"
    runner = CliRunner()
    res = runner.invoke(app, ["train", "mlp-mnist", "--epochs", "1", "--out", str(out),
                              "--data-dir", str(data), "--limit-train", "20"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", "mlp-mnist", "--checkpoint", str(out), "--data-dir",
                              str(data), "--json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert obj["model"] == "mlp-mnist" and obj["n_test"] == 20 and 0 <= obj["accuracy"] <= 1
    res = runner.invoke(app, ["evaluate", "lenet-mnist", "--checkpoint", str(out), "--json"])
    assert isinstance(res.exception, DataError)


def test_unknown_model(app: typer.Typer) -> None:
    res = CliRunner().invoke(app, ["evaluate", "nope", "--json"])
    assert isinstance(res.exception, ConfigError)
    assert "lenet-mnist" in str(res.exception)
