"""Training and evaluation of the networks (shipped, declared in a user's YAML, or imported).

Training: Adam (AdamW: decoupled weight decay, on the float weights only, where a model asks
for it), cosine learning-rate decay per epoch or a per-step one-cycle schedule, cross-entropy on the IMAC read-out (plus
on the float head where a model has one), BinaryConnect clipping after every step, seeded
shuffling per epoch (so a resumed run sees the same batches as an uninterrupted one), random
crop + flip for CIFAR-10.  A checkpoint is written atomically after every epoch; the final one
carries the full-test-set metrics and drops the optimizer state to stay small.

``device`` (``imac train --device cuda``): the epochs run there; checkpoints always hold CPU
tensors, and the final metrics (the int8 trunk included, which runs on the CPU only) are measured
on the CPU, so they are the numbers ``imac evaluate`` gives anywhere.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imac.errors import ConfigError, DataError
from imac.nn.checkpoint import (
    FORMAT,
    cache_checkpoint_target,
    check_checkpoint_target,
    find_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    provenance,
    save_checkpoint,
)
from imac.nn.data import Dataset, load_dataset
from imac.nn.models import ImacNet, get_spec
from imac.nn.quant import Int8Trunk

CALIBRATION_IMAGES = 1024  # training images that calibrate the int8 activation scales
EVAL_BATCH = 1000


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from imac.progress import progress_bar

    return progress_bar(total=total, desc=desc, leave=False, enabled=enabled)


def _load(dataset: str, split: str, data_dir: str | Path | None,
          limit: int | None, strict: bool = True) -> Dataset:
    return load_dataset(dataset, split, data_dir, strict=strict).subset(limit)


@torch.no_grad()
def accuracies(model: ImacNet, data: Dataset, int8_trunk: torch.nn.Module | None = None,
               progress: bool = False) -> dict[str, float]:
    """Accuracy of every prediction variant of ``model`` on ``data`` (see
    :meth:`ImacNet.predict_variants`)."""
    model.eval()
    correct: dict[str, int] = {}
    labels = torch.as_tensor(data.labels)
    with _bar(len(data), "evaluate", progress) as bar:
        for i in range(0, len(data), EVAL_BATCH):
            x = model.prepare(data.images[i:i + EVAL_BATCH])
            preds = model.predict_variants(x, int8_trunk)
            for k, p in preds.items():
                correct[k] = correct.get(k, 0) + int((p.cpu() == labels[i:i + EVAL_BATCH]).sum())
            bar.update(x.shape[0])
    return {k: v / len(data) for k, v in sorted(correct.items())}


def calibrated_int8_trunk(model: ImacNet, train: Dataset | None = None,
                          calibration: list[Any] | None = None) -> Int8Trunk | None:
    """The int8 trunk, from stored calibration or calibrated on the first training images."""
    trunk = model.int8_trunk()
    if trunk is None:
        return None
    if calibration is not None:
        return trunk.set_calibration([(float(s), bool(g)) for s, g in calibration])
    if train is None:
        return None
    x = model.prepare(train.images[:CALIBRATION_IMAGES])
    return trunk.calibrate(x)


def training_device(device: str | None) -> torch.device:
    """The torch device to train on: ``None`` -> CPU; a CUDA device must be present."""
    from imac.hardware.device import resolve_device

    if device == "numpy":
        raise ConfigError("device 'numpy' is the circuit batch's numpy path; training runs on a torch device "
                          "(cpu, cuda, cuda:1)")
    dev = torch.device(resolve_device(device) or "cpu")
    # torch.cuda, torch.mps, torch.xpu, ...: present on this machine? (meta and the like have no module)
    available = getattr(getattr(torch, dev.type, None), "is_available", None)
    if dev.type != "cpu" and not (callable(available) and available()):
        raise ConfigError(f"device {device!r}: torch cannot train there on this machine (use cpu or a CUDA device)")
    return dev


def to_cpu(obj: Any) -> Any:
    """``obj`` (tensors in dicts, lists, tuples) with every tensor on the CPU: what a checkpoint
    holds, whatever device trained it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):  # a state_dict is an OrderedDict with its modules' versions in _metadata
        out: dict[Any, Any] = (OrderedDict((k, to_cpu(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict)
                               else {k: to_cpu(v) for k, v in obj.items()})
        if hasattr(obj, "_metadata"):  # torch's load-time upgrades read it
            setattr(out, "_metadata", obj._metadata)  # noqa: B010  (an attribute mypy cannot know of)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


@dataclass
class TrainResult:
    path: Path
    metrics: dict[str, Any]
    epochs: int
    seconds: float


def _lr_at(epoch: float, epochs: int, lr: float, schedule: str = "cosine",
           warmup: float = 0.15) -> float:
    """Learning rate at (fractional) ``epoch`` of ``epochs`` -- a function of the position in
    the run only, so a resumed run continues the same schedule.

    ``cosine``: per-epoch cosine decay from ``lr`` to lr/20 (``epoch`` is taken whole).
    ``onecycle``: linear warm-up from lr/25 to ``lr`` over the first ``warmup`` fraction of the
    run, then cosine decay to lr/1e4 (as torch's OneCycleLR, per step).
    """
    if schedule == "cosine":
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * int(epoch) / max(epochs, 1))))
    if schedule != "onecycle":
        raise ConfigError(f"unknown learning-rate schedule {schedule!r}")
    t = epoch / max(epochs, 1)
    if t < warmup:
        return lr * (1 / 25 + (1 - 1 / 25) * t / warmup)
    q = (t - warmup) / max(1 - warmup, 1e-9)
    return lr * (1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(q, 1.0))))


def param_groups(model: ImacNet, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: float weight matrices / kernels of the trunk and the float head get
    ``weight_decay``; biases, batch-norm parameters and the binary head's shadow weights none."""
    decay_ids = set()
    for part in (model.trunk, model.float_head):
        if part is not None:
            decay_ids |= {id(p) for p in part.parameters() if p.ndim > 1}
    decay = [p for p in model.parameters() if id(p) in decay_ids]
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    groups = [{"params": rest, "weight_decay": 0.0}]
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    return groups


def train(name: str, epochs: int | None = None, seed: int = 0, out: str | Path | None = None,
          resume: str | Path | bool | None = None, limit_train: int | None = None,
          limit_test: int | None = None, batch_size: int | None = None,
          lr: float | None = None, data_dir: str | Path | None = None, threads: int | None = 1,
          overwrite: bool = False, progress: bool = True,
          config: dict[str, Any] | None = None, strict_data: bool = True,
          model: ImacNet | None = None, extra: dict[str, Any] | None = None,
          device: str | None = None) -> TrainResult:
    """Train network ``name`` (a shipped or user network, or a network spec YAML path); return
    where the checkpoint went and its metrics.

    ``resume``: True (continue ``out``) or a checkpoint path; the run continues up to
    ``epochs`` in total.  Without ``resume`` an existing ``out`` is refused unless
    ``overwrite``.  ``limit_train``/``limit_test`` take the first N samples (tiny CI runs).
    ``config``: dotted changes to the network spec (new runs only, e.g. ``{"head.hidden": [32]}``).
    ``model``: the starting network (an imported one, with its trunk and float head in place),
    ``extra``: entries stored with it in the checkpoint (its ``trunk_program``, the import record).
    When the spec asks for a validation split (e.g. the last 5000 training images), those images
    are held out and the final checkpoint holds the epoch with the best validation accuracy of the
    IMAC head (``metrics["best_epoch"]``).
    ``strict_data=False`` accepts data sets of non-official size (tests on synthetic files).
    ``device``: where the epochs run (default CPU; see the module docstring).
    """
    from imac.nn.netspec import with_changes

    ms = get_spec(name)
    name = ms.name
    out = Path(out) if out is not None else cache_checkpoint_target(name)
    dev = training_device(device)
    if threads:
        torch.set_num_threads(threads)

    payload: dict[str, Any] | None = None
    if resume:
        rpath = out if resume is True else Path(resume)
        payload = load_checkpoint(rpath, expected_model=name)
        check_checkpoint_target(out, overwrite, resuming=out.exists() and Path(rpath).resolve() == out.resolve())
    else:
        check_checkpoint_target(out, overwrite)

    if payload:
        model = model_from_checkpoint(payload, rpath)
        net = model.spec
        extra = {k: payload[k] for k in ("trunk_program", "imported") if payload.get(k) is not None}
    else:
        net = model.spec if model is not None else ms.spec
        if config:
            net = with_changes(net, config, f"changes to {name}")
    if not net.trainable:
        raise ConfigError(f"{name} is not trained here (trainable: false in its spec): analytic studies only")
    ts = net.train
    epochs = int(epochs if epochs is not None else (payload or {}).get("epochs", ts.epochs))
    seed = int(payload["seed"]) if payload else int(seed)
    batch_size = int(batch_size or ts.batch_size)
    lr = float(lr or ts.lr)

    full_train = _load(net.dataset, "train", data_dir, limit_train, strict_data)
    test_set = _load(net.dataset, "test", data_dir, limit_test, strict_data)
    # hold out the last images of the training set to pick the best epoch: binary nets jump
    # by a few points from epoch to epoch, and the test set must not choose
    n_val = ts.validation if len(full_train) >= 4 * ts.validation else 0
    train_set = full_train.subset(len(full_train) - n_val) if n_val else full_train
    val_set = (Dataset(full_train.name, "validation", full_train.images[-n_val:],
                       full_train.labels[-n_val:], full_train.classes, full_train.sha256)
               if n_val else None)

    torch.manual_seed(seed)
    if model is None:
        model = ImacNet(net)
    model.to_device(dev)  # before the optimizer: its state lives beside the parameters
    model.freeze_()
    # AdamW with zero decay is Adam: models without weight decay train as before
    opt = torch.optim.AdamW(param_groups(model, ts.weight_decay), lr=lr)
    if payload and payload.get("optimizer"):
        opt.load_state_dict(payload["optimizer"])
    start = int(payload["epoch"]) if payload else 0
    history: list[dict[str, Any]] = list((payload or {}).get("metrics", {}).get("history", []))
    seconds = float((payload or {}).get("metrics", {}).get("train_seconds", 0.0))
    best: dict[str, Any] | None = (payload or {}).get("best")
    if payload and best is None:  # resuming a finished run: its weights are the best so far
        best = {"epoch": payload["epoch"],
                "val_accuracy": payload["metrics"].get("val_accuracy", -1.0),
                "state_dict": payload["state_dict"]}
    if start >= epochs:
        raise DataError(f"checkpoint already has {start} epochs; ask for more than {epochs}")

    meta = {"format": FORMAT, "model": name, "network": net.model_dump(mode="json"), "seed": seed,
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "limit_train": limit_train, "validation": n_val,
            "optimizer_settings": {"name": "AdamW", **ts.model_dump(mode="json")},
            "data_sha256": {"train": train_set.sha256, "test": test_set.sha256}, "train_device": str(dev),
            **(extra or {})}
    labels = torch.as_tensor(train_set.labels)
    n = len(train_set)
    steps = max(1, math.ceil(n / batch_size))
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        # per-epoch generator: the batch order depends on (seed, epoch) only
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        torch.manual_seed(seed * 1000 + epoch + 1)  # augmentation and noise draws
        order = torch.randperm(n, generator=gen)
        model.train()
        tot_loss, tot_ok, seen = 0.0, 0, 0
        with _bar(n, f"{name} epoch {epoch + 1}/{epochs}", progress) as bar:
            for step, i in enumerate(range(0, n, batch_size)):
                for g in opt.param_groups:
                    g["lr"] = _lr_at(epoch + step / steps, epochs, lr, ts.schedule, ts.warmup)
                idx = order[i:i + batch_size]
                x = model.augment(model.prepare(train_set.images[idx.numpy()]))
                y = labels[idx].to(dev)
                loss, scores = model.loss(x, y, label_smoothing=ts.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                model.clip_()
                tot_loss += float(loss.detach()) * len(idx)
                tot_ok += int((scores.argmax(1) == y).sum())
                seen += len(idx)
                bar.update(len(idx))
                bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{tot_ok / seen:.4f}", refresh=False)
        dt = time.perf_counter() - t0
        seconds += dt
        test_acc = accuracies(model, test_set)
        val_acc = accuracies(model, val_set)["accuracy"] if val_set is not None else None
        history.append({"epoch": epoch + 1, "loss": tot_loss / seen, "train_acc": tot_ok / seen,
                        "val_accuracy": val_acc, "seconds": dt,
                        **{f"test_{k}": v for k, v in test_acc.items()}})
        if val_acc is not None and (best is None or val_acc > best["val_accuracy"]):
            best = {"epoch": epoch + 1, "val_accuracy": val_acc,
                    "state_dict": copy.deepcopy(model.state_dict())}
        print(f"{name} epoch {epoch + 1}/{epochs}: loss {tot_loss / seen:.4f} train acc "
              f"{tot_ok / seen:.4f} test " + " ".join(f"{k} {v:.4f}" for k, v in
                                                      test_acc.items()) + f" ({dt:.1f} s)",
              file=sys.stderr, flush=True)
        final = epoch + 1 == epochs
        metrics: dict[str, Any] = {"history": history, "train_seconds": seconds}
        calibration = None
        if final:
            model.to_device("cpu")  # the final metrics as every later command measures them (int8: CPU only)
            if best is not None and val_set is not None:
                model.load_state_dict(best["state_dict"])
                metrics.update(best_epoch=best["epoch"], val_accuracy=best["val_accuracy"])
            trunk = calibrated_int8_trunk(model, train_set)
            if trunk is not None:
                calibration = trunk.calibration()
            metrics.update(accuracies(model, test_set, trunk))
            metrics["n_test"] = len(test_set)
        save_checkpoint(out, {
            **meta, **provenance(), "epoch": epoch + 1, "metrics": metrics,
            "state_dict": to_cpu(model.state_dict()),
            "optimizer": None if final else to_cpu(opt.state_dict()),
            "int8_calibration": calibration,
            "best": None if final else to_cpu(best),
        })
    return TrainResult(out, metrics, epochs, seconds)


def evaluate(name: str, checkpoint: str | Path | None = None, limit: int | None = None,
             data_dir: str | Path | None = None, progress: bool = True,
             threads: int | None = 1, strict_data: bool = True) -> dict[str, Any]:
    """Accuracy of ``name``'s checkpoint on the test set (the first ``limit`` images if set).

    Returns ``accuracy`` (CPU-IMAC: float trunk, binary head, neuron curve) and, where they
    apply, ``accuracy_int8``, ``accuracy_float``, ``accuracy_float_int8``; ``recorded`` holds
    the checkpoint's own metrics for comparison.
    """
    name = get_spec(name).name
    if threads:
        torch.set_num_threads(threads)
    path = find_checkpoint(name, checkpoint)
    payload = load_checkpoint(path, expected_model=name)
    model = model_from_checkpoint(payload, path)
    test_set = _load(model.dataset, "test", data_dir, limit, strict_data)
    cal = payload.get("int8_calibration")
    trunk = calibrated_int8_trunk(
        model, None if cal is not None or model.trunk is None
        else _load(model.dataset, "train", data_dir, None, strict_data), cal)
    acc = accuracies(model, test_set, trunk, progress=progress)
    recorded = {k: v for k, v in payload.get("metrics", {}).items() if k.startswith("accuracy")}
    sha = payload.get("data_sha256", {}).get("test")
    return {
        "model": name, "checkpoint": str(path), "n_test": len(test_set), **acc,
        "recorded": recorded, "epochs": payload.get("epoch"),
        "data_sha256_matches": sha == test_set.sha256 if sha else None,
        "fc_layer_sizes": model.fc_layer_sizes(), "layer_scales_v": model.layer_scales(),
        "layer_norms": model.layer_norms(),
    }
