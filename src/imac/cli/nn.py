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
    name: Annotated[str, typer.Argument(
        help="Network name (see list-models) or a network spec YAML (see docs/networks.md).")],
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
    from imac.nn.models import resolve_name
    from imac.nn.train import train

    res = train(name, epochs=epochs, seed=seed, out=out, resume=resume or None,
                limit_train=limit_train, limit_test=limit_test, batch_size=batch_size,
                lr=lr, data_dir=data_dir, threads=threads, overwrite=overwrite)
    summary = {k: v for k, v in res.metrics.items() if k.startswith("accuracy")}
    typer.echo(json.dumps({"model": resolve_name(name), "checkpoint": str(res.path), "epochs": res.epochs,
                           "train_seconds": round(res.seconds, 1), **summary}))

@app.command("evaluate")
def evaluate_cmd(
    name: Annotated[str, typer.Argument(help="Network name, network spec YAML or checkpoint file.")],
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


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give the input shape as integers, e.g. 1,8,8") from None
    if not shape or any(d < 1 or d > 1 << 16 for d in shape):
        raise typer.BadParameter(f"{text!r}: every dimension must be 1 to 65536")
    return shape


@app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Argument(
        help="The network: a .py file defining an nn.Module (with --state-dict), a TorchScript file, a "
        "torch.export .pt2, an .onnx file, or binary weights (.npz, or a folder of CSV matrices).")],
    name: Annotated[str, typer.Option(help="Name of the imported network (lower case, digits, . _ -).")],
    data: Annotated[str, typer.Option(
        help="Its data: a data spec YAML (see docs/data.md), or mnist / cifar10.")],
    state_dict: Annotated[Path | None, typer.Option(help="Weights for a .py model (torch.save(state_dict)).")] = None,
    class_name: Annotated[str | None, typer.Option(help="The nn.Module class in the .py file (default: the only one).")]
    = None,
    input_shape: Annotated[str | None, typer.Option(
        help="One sample's input shape, e.g. 1,8,8 (default: from the data).")] = None,
    epochs: Annotated[int | None, typer.Option(min=0,
        help="Fine-tuning epochs of the binary head (default 20; binary weights: 0 = as given).")] = None,
    lr: Annotated[float, typer.Option(min=1e-8, max=10.0, help="Fine-tuning learning rate.")] = 5e-3,
    batch_size: Annotated[int, typer.Option(min=1, max=65536, help="Fine-tuning batch size.")] = 64,
    finetune_trunk: Annotated[bool, typer.Option(help="Fine-tune the trunk with the head (default: frozen).")]
    = False,
    binarize_at: Annotated[float | None, typer.Option(
        help="Binary weights only: +1 where a stored pixel value >= this (default: sign of standardised pixels).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the fine-tuning.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Checkpoint path (default: <cache>/checkpoints/NAME.pt).")] = None,
    limit_train: Annotated[int | None, typer.Option(min=1, help="Fine-tune on the first N images only.")] = None,
    limit_test: Annotated[int | None, typer.Option(min=1, help="Test on the first N images only.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Bring your own network: split it into a CPU trunk and an FC head, put the head on IMAC
    (binary, with the SOT-MRAM neuron), fine-tune it and write a checkpoint every command takes by
    NAME afterwards (simulate, calibrate, cpu-imac, compare, export, spice-check, sweeps)."""
    from imac.nn.convert import import_network

    res = import_network(source, name=name, data=data, input_shape=_shape(input_shape), state_dict=state_dict,
                         class_name=class_name, epochs=epochs, lr=lr, batch_size=batch_size,
                         finetune_trunk=finetune_trunk, binarize_at=binarize_at, seed=seed, out=out,
                         overwrite=overwrite, limit_train=limit_train, limit_test=limit_test, threads=threads)
    from imac.nn.checkpoint import load_checkpoint

    summary = {k: v for k, v in res.metrics.items() if k.startswith("accuracy")}
    as_imported = (load_checkpoint(res.path).get("imported") or {}).get("float_accuracy")
    if as_imported is not None:  # the user's float network before any fine-tuning (of its trunk)
        summary["accuracy_float_as_imported"] = as_imported
    result = {"model": name, "checkpoint": str(res.path), "epochs": res.epochs,
              "train_seconds": round(res.seconds, 1), **summary}
    if as_json:
        typer.echo(json.dumps(with_data(result)))
        return
    typer.echo(f"{name}: checkpoint {res.path}")
    for k, v in summary.items():
        typer.echo(f"  {k:22s} {100 * v:6.2f} %")
    typer.echo(f"next: imac cpu-imac {name} | imac simulate {name} --fidelity circuit | imac calibrate {name}")
