"""`imac train`, `imac evaluate` and `imac list-models`: the networks.

Only the JSON result goes to stdout; progress bars and logs go to stderr.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from imac.cli.app import app
from imac.cli.options import (
    CALIBRATE_EPOCHS,
    CIRCUIT_EPOCHS,
    ConfigOpt,
    JsonOpt,
    OverwriteOpt,
    RowsOpt,
    TrainDeviceOpt,
    design,
    say,
    seed_option,
    with_data,
)
from imac.errors import ConfigError


@app.command("train")
def train_cmd(
    name: Annotated[str, typer.Argument(
        help="Network name (see list-models) or a network spec YAML (see docs/networks.md).")],
    epochs: Annotated[int | None, typer.Option(help="Total epochs (default: model's).")]
    = None,
    seed: Annotated[int, seed_option("Seed of init, data order, augmentation.")] = 0,
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
    device: TrainDeviceOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a model and write its checkpoint (+ metrics JSON beside it)."""
    from imac.nn.models import resolve_name
    from imac.nn.train import train

    res = train(name, epochs=epochs, seed=seed, out=out, resume=resume or None,
                limit_train=limit_train, limit_test=limit_test, batch_size=batch_size,
                lr=lr, data_dir=data_dir, threads=threads, overwrite=overwrite, device=device)
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
    seed: Annotated[int, seed_option("Seed of the fine-tuning (and of the calibration).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Checkpoint path (default: <cache>/checkpoints/NAME.pt).")] = None,
    limit_train: Annotated[int | None, typer.Option(
        min=1, help="Fine-tune (and calibrate) on the first N training images only.")] = None,
    limit_test: Annotated[int | None, typer.Option(min=1, help="Test on the first N images only.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
    device: TrainDeviceOpt = None,
    calibrate: Annotated[bool, typer.Option(
        help="Then run the named hardware-aware calibration (as `imac calibrate`) and report the circuit "
        "fidelity's accuracy without and with it.")] = False,
    calibrate_epochs: Annotated[int, typer.Option(
        min=1, help="With --calibrate: behavioural fine-tuning epochs (imac calibrate --epochs).")] = CALIBRATE_EPOCHS,
    circuit_epochs: Annotated[int, typer.Option(
        min=0, help="With --calibrate: circuit-in-the-loop epochs after the behavioural ones (0: none).")]
    = CIRCUIT_EPOCHS,
    config: ConfigOpt = "paper",
    rows: RowsOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Bring your own network: split it into a CPU trunk and an FC head, put the head on IMAC
    (binary, with the SOT-MRAM neuron), fine-tune it and write a checkpoint every command takes by
    NAME afterwards (simulate, calibrate, cpu-imac, compare, export, spice-check, sweeps).  With
    --calibrate, the named calibration for the design of --config/--rows follows in the same run."""
    from imac.nn.convert import import_network

    spec = None
    if calibrate:
        # the design is checked now, not after minutes of fine-tuning: the spec and its overrides,
        # and the neuron it calibrates through (shipped, cached, or characterized now in ngspice)
        from imac.hardware.network import calibration_target, hardware_curve
        from imac.nn.checkpoint import cache_checkpoint_target, check_checkpoint_target
        from imac.nn.train import training_device

        training_device(device)
        spec = design(config, rows)
        # where the calibrated head will go: a user's own file there stops the import now, not after it
        base = out.expanduser() if out is not None else cache_checkpoint_target(name)
        check_checkpoint_target(calibration_target(base, spec.subarray.rows, spec.amplifier.topology),
                                overwrite=True)
        hardware_curve(spec)
    else:
        # options that only mean something with --calibrate: refused, not silently ignored
        given = [opt for opt, moved in (("--config", config != "paper"), ("--rows", rows is not None),
                                        ("--calibrate-epochs", calibrate_epochs != CALIBRATE_EPOCHS),
                                        ("--circuit-epochs", circuit_epochs != CIRCUIT_EPOCHS)) if moved]
        if given:
            raise ConfigError(f"{', '.join(given)}: "
                              f"{'applies' if len(given) == 1 else 'apply'} with --calibrate only")
    res = import_network(source, name=name, data=data, input_shape=_shape(input_shape), state_dict=state_dict,
                         class_name=class_name, epochs=epochs, lr=lr, batch_size=batch_size,
                         finetune_trunk=finetune_trunk, binarize_at=binarize_at, seed=seed, out=out,
                         overwrite=overwrite, limit_train=limit_train, limit_test=limit_test, threads=threads,
                         device=device)
    summary = {k: v for k, v in res.metrics.items() if k.startswith("accuracy")}
    if res.float_accuracy_as_imported is not None:  # the user's float network before any fine-tuning
        summary["accuracy_float_as_imported"] = res.float_accuracy_as_imported
    # how later commands name it: by name from the cache, by its file where --out put it elsewhere
    ref = name if out is None else shlex.quote(str(res.path))
    design_opts = ((f" --config {shlex.quote(config)}" if config != "paper" else "")
                   + (f" --rows {rows}" if rows is not None else ""))
    result: dict[str, Any] = {"model": name, "checkpoint": str(res.path), "epochs": res.epochs,
                              "train_seconds": round(res.seconds, 1)}
    if spec is not None:
        summary, result["calibration"] = _calibrate_imported(
            name, ref, res.path, spec, config, design_opts, summary, calibrate_epochs, circuit_epochs,
            limit_train, limit_test, seed)
    result |= summary
    if as_json:
        typer.echo(json.dumps(with_data(result)))
        return
    typer.echo(f"{name}: checkpoint {res.path}")
    if spec is not None:
        typer.echo(f"{name}: calibrated head {result['calibration']['checkpoint']}")
    for k, v in summary.items():
        typer.echo(f"  {k:27s} {100 * v:6.2f} %")
    if spec is None:
        typer.echo(f"next: imac cpu-imac {ref} | imac simulate {ref} --fidelity circuit | imac calibrate {ref}")
    else:
        typer.echo(f"next: imac simulate {ref} --fidelity circuit --calibrated{design_opts} | imac cpu-imac {ref}")


def _calibrate_imported(name: str, ref: str, path: Path, spec: Any, config: str, design_opts: str,
                        summary: dict[str, float], epochs: int, circuit_epochs: int, limit_train: int | None,
                        limit_test: int | None, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """`imac import --calibrate` after the import: the named calibration of the checkpoint at
    ``path`` (written where `imac calibrate` writes it), then the circuit fidelity on the test set
    without and with it.  The summary with both accuracies added, and the calibration's record.

    The imported checkpoint is complete before this starts, so a failure here leaves it in place:
    the error says so and names the command that picks up from where it stopped."""
    from imac.errors import ImacError, OutputError
    from imac.hardware.network import calibrate, simulate_model

    rows = spec.subarray.rows
    done = f"{name} was imported ({path} is a valid checkpoint)"
    failed = "its calibration failed"
    retry = (f"imac calibrate {ref}{design_opts} --epochs {epochs} --circuit-epochs {circuit_epochs}"
             + (f" --limit {limit_train}" if limit_train is not None else "") + (f" --seed {seed}" if seed else ""))
    try:
        say(f"calibrating {name} for {rows}-row subarrays: {epochs} behavioural + {circuit_epochs} "
            "circuit-in-the-loop epochs")
        dest, info = calibrate(name, spec, rows, epochs, path, limit_train, seed, circuit_epochs=circuit_epochs)
        say(f"calibrated head written to {dest}")
        done += f" and calibrated ({dest})"
        failed = "simulating it failed"
        retry = f"imac simulate {ref} --fidelity circuit --calibrated{design_opts}"
        accuracy: dict[bool, float] = {}
        for calibrated in (False, True):
            say(f"circuit fidelity, {'calibrated' if calibrated else 'software-trained'} head")
            ev = simulate_model(name, "circuit", spec, checkpoint=path, calibrated=calibrated, limit=limit_test,
                                progress=say)
            accuracy[calibrated] = float(ev.result["accuracy"])
    except ImacError as err:  # one `error:` line that also says what is done and how to go on
        msg = f"{done}, but {failed}: {err}; retry with `{retry}`"
        try:
            new = type(err)(msg)
        except TypeError:  # an error class with another constructor: the message is what matters
            new = ImacError(msg)
        raise new from err
    except OSError as err:  # a full disk, a folder that is a file: as the main prints it, in the same line
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        raise OutputError(f"{done}, but {failed}: {err.strerror or err}{where}; retry with `{retry}`") from err
    except BaseException:  # a bug or an interrupt: this note, then the usual error line
        say(f"{done}, but {failed}; retry with `{retry}`")
        raise
    record = {"checkpoint": str(dest), "config": config, "subarray_rows": rows, "epochs": epochs,
              "circuit_epochs": circuit_epochs, "train_images": info["train_images"],
              "seconds": round(info["seconds"], 1), "n_test": ev.result["n_images"]}
    return summary | {"accuracy_circuit": accuracy[False], "accuracy_circuit_calibrated": accuracy[True]}, record
