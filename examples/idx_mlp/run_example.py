"""Bring your own data: an IMAC MLP trained on a user's IDX files, without writing any Python.

    python examples/idx_mlp/run_example.py [OUT_DIR]            # ~1-2 minutes on 2 cores
    python examples/idx_mlp/run_example.py OUT_DIR --full       # every training image (~4 min)
    python examples/idx_mlp/run_example.py OUT_DIR --limit-train 3000 --epochs 5

The "user's data" are MNIST's own four IDX files copied under new names into OUT_DIR/user-data
(from ``$IMAC_DATA_DIR`` or ``../shared/data/mnist`` beside the repository): any data set stored
in the IDX format is brought in the same way.

1. ``OUT_DIR/user-data/digits.yaml``: the data spec pointing at the renamed files (docs/data.md);
2. ``OUT_DIR/idx-mlp.yaml``: the network spec, an MLP with no CPU trunk: pixels binarized to +-1
   (stored value >= 128) straight into a binary IMAC head 784-64-10 (docs/networks.md);
3. ``imac train OUT_DIR/idx-mlp.yaml``: trained and saved as ``OUT_DIR/cache/checkpoints/idx-mlp.pt``
   (``IMAC_CACHE_DIR=OUT_DIR/cache``: nothing lands in the user's own cache), after which every
   command takes the name ``idx-mlp``;
4. ``imac simulate idx-mlp --fidelity circuit`` (wires, loaded neurons): the software-trained head;
5. ``imac calibrate idx-mlp``: the named hardware-aware calibration for 32x32 subarrays, then
   ``imac simulate`` again (the calibrated head) and ``imac evaluate idx-mlp`` (software accuracy);
6. ``report.md`` (and ``results.json``) in OUT_DIR with the numbers of this run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "idx-mlp"
LIMIT_TRAIN = 10000  # the default quick run; --full trains on all 60,000 images
EPOCHS = 10

# MNIST's files (gzip-compressed or not) -> the names the "user" gave them
MNIST_FILES = {
    "train-images-idx3-ubyte": "digits-train-images.idx",
    "train-labels-idx1-ubyte": "digits-train-labels.idx",
    "t10k-images-idx3-ubyte": "digits-test-images.idx",
    "t10k-labels-idx1-ubyte": "digits-test-labels.idx",
}


def mnist_folder() -> Path | None:
    """The folder holding MNIST's four IDX files: $IMAC_DATA_DIR(/mnist), else ../shared/data/mnist."""
    cands = []
    env = os.environ.get("IMAC_DATA_DIR")
    if env:
        cands += [Path(env).expanduser() / "mnist", Path(env).expanduser()]
    cands.append(HERE.parents[2] / "shared" / "data" / "mnist")
    for folder in cands:
        if all(_stored(folder, stem) is not None for stem in MNIST_FILES):
            return folder
    return None


def _stored(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def write_user_data(out: Path) -> Path:
    """MNIST's IDX files copied under new names into OUT_DIR/user-data, with their data spec."""
    src = mnist_folder()
    if src is None:
        sys.exit("MNIST's IDX files (train-images-idx3-ubyte[.gz], ...) not found in $IMAC_DATA_DIR/mnist, "
                 "$IMAC_DATA_DIR or ../shared/data/mnist beside the repository: set IMAC_DATA_DIR to the "
                 "folder holding them")
    user = out / "user-data"
    user.mkdir(parents=True)
    names = {}
    for stem, new in MNIST_FILES.items():
        path = _stored(src, stem)
        assert path is not None
        target = new + (".gz" if path.suffix == ".gz" else "")
        shutil.copyfile(path, user / target)
        names[stem] = target
    spec = user / "digits.yaml"
    spec.write_text(
        "# A user's handwritten digits stored as IDX files (here: MNIST's own, renamed)\n"
        "name: user-digits\nformat: idx\n"
        f"train: {{images: {names['train-images-idx3-ubyte']}, labels: {names['train-labels-idx1-ubyte']}}}\n"
        f"test: {{images: {names['t10k-images-idx3-ubyte']}, labels: {names['t10k-labels-idx1-ubyte']}}}\n"
        "input_shape: [28, 28]\n")
    return spec


def write_network_spec(out: Path, epochs: int) -> Path:
    spec = out / f"{NAME}.yaml"
    spec.write_text(
        "# An MLP on IMAC with no CPU trunk: stored pixels >= 128 -> +1, else -1, straight into the\n"
        "# binary IMAC head 784-64-10 (one hidden layer of 64 SOT-MRAM neurons)\n"
        f"name: {NAME}\n"
        "description: 784-64-10 binary IMAC MLP on a user's IDX digits (examples/idx_mlp)\n"
        "dataset: user-data/digits.yaml      # a data spec, relative to this file\n"
        "input: {binarize_at: 128}\n"
        "head: {hidden: [64]}\n"
        f"train: {{epochs: {epochs}, batch_size: 32, lr: 0.002, validation: 0}}\n")
    return spec


def imac(*args: str, json_out: bool = True) -> dict:
    """Run one imac command; its JSON result (stdout); progress goes to the terminal."""
    exe = [shutil.which("imac")] if shutil.which("imac") else [sys.executable, "-m", "imac.cli"]
    t0 = time.perf_counter()
    print("$ imac " + " ".join(args), flush=True)
    res = subprocess.run([*exe, *args, *(["--json"] if json_out else [])], stdout=subprocess.PIPE, text=True,
                         check=False)
    if res.returncode != 0:
        sys.exit(f"imac {args[0]} failed (exit {res.returncode})")
    out = json.loads(res.stdout) if json_out else {"output": res.stdout}
    out["_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(out: Path, limit_train: int | None, epochs: int, limit_test: int | None) -> dict:
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty: give a new folder")
    t_start = time.perf_counter()
    os.environ["IMAC_CACHE_DIR"] = str(out / "cache")  # the run's own cache, inherited by every imac command
    data_spec = write_user_data(out)
    net_spec = write_network_spec(out, epochs)
    test_args = ["--limit", str(limit_test)] if limit_test else []
    trained = imac("train", str(net_spec), *(["--limit-train", str(limit_train)] if limit_train else []),
                   *(["--limit-test", str(limit_test)] if limit_test else []), json_out=False)
    trained = {**json.loads(trained["output"]), "_seconds": trained["_seconds"]}
    before = imac("simulate", NAME, "--fidelity", "circuit", "--no-calibrated", *test_args)
    calibrated = imac("calibrate", NAME, "--rows", "32", "--epochs", "3", "--circuit-epochs", "1",
                      *(["--limit", str(limit_train)] if limit_train else []), json_out=False)
    calibrated = {**json.loads(calibrated["output"]), "_seconds": calibrated["_seconds"]}
    after = imac("simulate", NAME, "--fidelity", "circuit", "--calibrated", *test_args)
    evaluated = imac("evaluate", NAME, *test_args)
    results = {"data_spec": str(data_spec), "network_spec": str(net_spec), "limit_train": limit_train,
               "train": trained, "simulate_circuit": before, "calibrate": calibrated,
               "simulate_circuit_calibrated": after, "evaluate": evaluated,
               "seconds": round(time.perf_counter() - t_start, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    report = render(results)
    (out / "report.md").write_text(report)
    print(report)
    return results


def pct(v: object) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{100 * v:.2f} %"


def render(r: dict) -> str:
    tr, before, cal, after, ev = (r["train"], r["simulate_circuit"], r["calibrate"],
                                  r["simulate_circuit_calibrated"], r["evaluate"])
    n_train = "all" if r["limit_train"] is None else f"the first {r['limit_train']}"
    spec = Path(r["network_spec"]).name
    lines = [
        "# Bring your own data: an IMAC MLP on a user's IDX files", "",
        f"Run of `examples/idx_mlp/run_example.py`, {r['seconds']:.0f} s in all. Every number below comes "
        "from this run.", "",
        f"* data spec `user-data/{Path(r['data_spec']).name}` (format `idx`: MNIST's four files renamed into a "
        f"user folder); network spec `{spec}`: pixels binarized at 128, binary IMAC head 784-64-10, no CPU trunk;",
        f"* `imac train {spec}`: {tr['epochs']} epochs on {n_train} training images ({tr['train_seconds']} s); "
        f"checkpoint `{NAME}.pt` in the run's own cache (`IMAC_CACHE_DIR=cache`).", "",
        "| step | test images | accuracy |", "|---|---|---|",
        f"| `imac evaluate {NAME}`: software, the trained neuron curve | {ev.get('n_test', '-')} | "
        f"{pct(ev.get('accuracy'))} |",
        f"| `imac simulate {NAME} --fidelity circuit`: software-trained head (wires, loaded neurons, "
        f"{before.get('n_subarrays', '-')} subarrays of 32x32) | {before.get('n_images', '-')} | "
        f"{pct(before.get('accuracy'))} |",
        f"| `imac calibrate {NAME}` ({cal.get('_seconds', '-')} s), then the calibrated head at circuit fidelity | "
        f"{after.get('n_images', '-')} | {pct(after.get('accuracy'))} |",
        "",
        "## IMAC head at circuit fidelity (calibrated)", "",
        "| quantity | value |", "|---|---|",
    ]
    for key, label, scale, unit in (("n_subarrays", "subarrays", 1, ""), ("n_devices", "MTJ devices", 1, ""),
                                    ("power_w", "power", 1e3, "mW"), ("latency_s", "latency per image", 1e9, "ns"),
                                    ("energy_per_inference_j", "energy per image", 1e12, "pJ"),
                                    ("area_m2", "area", 1e12, "um^2")):
        v = after.get(key)
        if isinstance(v, int):
            lines.append(f"| {label} | {v} |")
        elif isinstance(v, float):
            lines.append(f"| {label} | {v * scale:.4g} {unit} |")
    lines += ["", "Every scalar of the calibrated head's circuit-fidelity result:", "",
              "```", json.dumps({k: v for k, v in after.items() if not isinstance(v, (list, dict))}, indent=1),
              "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default="idx-mlp-run", type=Path, help="new (or empty) output folder")
    ap.add_argument("--limit-train", type=int, default=LIMIT_TRAIN,
                    help=f"train on the first N training images (default {LIMIT_TRAIN})")
    ap.add_argument("--full", action="store_true", help="train on every training image")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})")
    ap.add_argument("--limit-test", type=int, default=None, help="test on the first N test images (default all)")
    a = ap.parse_args()
    main(a.out, None if a.full else a.limit_train, a.epochs, a.limit_test)
