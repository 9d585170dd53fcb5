"""`imac train`, `imac evaluate` and `imac list-models`: the networks.

Only the JSON result goes to stdout; progress bars and logs go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imac.cli.app import app
from imac.cli.options import JsonOpt, OverwriteOpt, with_data


@app.command("train")
def train_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name (see list-models).")],
    epochs: Annotated[int | None, typer.Option(help="Total epochs (default: model's).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of init, data order, augmentation.")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Checkpoint path (default: <cache>/checkpoints/NAME.pt).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the checkpoint at --out.")] = False,
    limit_train: Annotated[int | None, typer.Option(
        help="Train on the first N images only (tiny CI runs).")] = None,
    limit_test: Annotated[int | None, typer.Option(
        help="Test on the first N images only.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Batch size (default: the model's).")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Adam learning rate (default: the model's).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Data root (else IMAC_DATA_DIR, ../shared/data, cache, download).")] = None,
    threads: Annotated[int, typer.Option(min=1,
        help="torch CPU threads (1: these small nets gain nothing from more, and spinning "
        "OpenMP threads slow 20x or more when other processes share the cores).")] = 1,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a model and write its checkpoint (+ metrics JSON beside it)."""
    from imac.nn.train import train

    res = train(name, epochs=epochs, seed=seed, out=out, resume=resume or None,
                limit_train=limit_train, limit_test=limit_test, batch_size=batch_size,
                lr=lr, data_dir=data_dir, threads=threads, overwrite=overwrite)
    summary = {k: v for k, v in res.metrics.items() if k.startswith("accuracy")}
    typer.echo(json.dumps({"model": name, "checkpoint": str(res.path), "epochs": res.epochs,
                           "train_seconds": round(res.seconds, 1), **summary}))

@app.command("evaluate")
def evaluate_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    checkpoint: Annotated[Path | None, typer.Option(
        help="Checkpoint (default: <cache>/checkpoints, then the one shipped in the package).")] = None,
    limit: Annotated[int | None, typer.Option(
        help="Evaluate the first N test images.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data root.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Test-set accuracy of a checkpoint (CPU-IMAC, and int8/float variants)."""
    from imac.nn.train import evaluate

    res = with_data(evaluate(name, checkpoint=checkpoint, limit=limit, data_dir=data_dir))
    if as_json:
        typer.echo(json.dumps(res))
        return
    typer.echo(f"{name} ({res['checkpoint']}, {res['n_test']} test images)")
    for k, v in res.items():
        if k.startswith("accuracy"):
            rec = res["recorded"].get(k)
            typer.echo(f"  {k:22s} {100 * v:6.2f} %" +
                       (f"   (recorded {100 * rec:.2f} %)" if rec is not None else ""))

@app.command("list-models")
def list_models_cmd() -> None:
    """Registered models: name, checkpoint found or not, recorded accuracy, description."""
    from imac.nn.checkpoint import find_checkpoint, metrics_path
    from imac.nn.models import list_models

    for spec in list_models():
        try:
            path = find_checkpoint(spec.name)
        except Exception:
            path = None
        acc = ""
        if path is not None:
            try:
                m = json.loads(metrics_path(path).read_text()).get("metrics", {})
                acc = " ".join(f"{k}={100 * v:.2f}%" for k, v in sorted(m.items())
                               if k.startswith("accuracy"))
            except (OSError, ValueError, AttributeError):
                acc = "accuracy unknown (no metrics JSON)"
        status = f"checkpoint {path}" if path else "no checkpoint"
        typer.echo(f"{spec.name}\t{status}\t{acc or '-'}\t{spec.description}")
