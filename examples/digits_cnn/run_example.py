"""Bring your own network, end to end: a user's CNN for scikit-learn's digits onto CPU + IMAC.

    python examples/digits_cnn/run_example.py [OUT_DIR]      # ~2-4 minutes on 2 cores

1. ``train_float.py`` (plain PyTorch, no imac): the digits as NumPy arrays + a data spec, the
   float CNN trained, its ``state_dict`` saved;
2. ``imac import``: the network traced and split into a CPU trunk (the convolutions) and its FC
   head 512-64-10; the head becomes a binary IMAC head and is fine-tuned (trunk frozen);
3. ``imac simulate`` at circuit fidelity (wires, loaded neurons), the software-trained head;
4. ``imac calibrate``: the named hardware-aware calibration for 32x32 subarrays;
5. ``imac simulate`` again (the calibrated head) and ``imac cpu-imac``: CPU-only vs CPU-IMAC
   energy, latency and accuracy on the mobile CPU model;
6. ``report.md`` (and every command's JSON result in ``results.json``) in OUT_DIR with the numbers
   of this run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


def main(out: Path) -> None:
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty: give a new folder")
    t_start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "train_float.py"), str(out)], check=True, cwd=HERE)
    float_run = json.loads((out / "float_training.json").read_text())
    ckpt = str(out / "digits-cnn.pt")
    imported = imac("import", str(HERE / "digits_net.py"), "--state-dict", str(out / "digits_net_state.pt"),
                    "--name", "digits-cnn", "--data", str(out / "digits.yaml"),
                    "--out", ckpt)
    before = imac("simulate", ckpt, "--fidelity", "circuit", "--no-calibrated")
    imac("calibrate", ckpt, "--rows", "32", "--epochs", "3", "--circuit-epochs", "1", json_out=False)
    after = imac("simulate", ckpt, "--fidelity", "circuit", "--calibrated")
    system = imac("cpu-imac", ckpt, "--fidelity", "circuit")
    seconds = time.perf_counter() - t_start
    results = {"float_training": float_run, "import": imported, "simulate_circuit": before,
               "simulate_circuit_calibrated": after, "cpu_imac": system, "seconds": round(seconds, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report = render(float_run, imported, before, after, system, seconds)
    (out / "report.md").write_text(report)
    print(report)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def render(float_run: dict, imported: dict, before: dict, after: dict, system: dict, seconds: float) -> str:
    def get(d: dict, *keys: str) -> object:
        for k in keys:
            if k in d:
                return d[k]
        return None

    lines = [
        "# Bring your own network: scikit-learn digits CNN on CPU + IMAC", "",
        f"Run of `examples/digits_cnn/run_example.py`, {seconds:.0f} s in all. Every number below comes "
        "from this run.", "",
        "| step | result |", "|---|---|",
        f"| float CNN, plain PyTorch ({float_run['train_images']} training images, "
        f"{float_run['train_seconds']} s) | test accuracy {pct(float_run['float_test_accuracy'])} |",
        f"| imported: user's float head, frozen (CPU-only) | {pct(imported.get('accuracy_float'))} |",
        f"| imported: binary IMAC head fine-tuned {imported['epochs']} epochs ({imported['train_seconds']} s), "
        f"software | {pct(imported.get('accuracy'))} |",
        f"| circuit fidelity, software-trained head | {pct(get(before, 'accuracy', 'accuracy_imac'))} |",
        f"| circuit fidelity, hardware-aware calibrated head | {pct(get(after, 'accuracy', 'accuracy_imac'))} |",
        "",
        "## CPU-only vs CPU-IMAC", "",
        "```", json.dumps({k: v for k, v in system.items() if not isinstance(v, (list, dict))}, indent=1), "```",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "digits-run"))
