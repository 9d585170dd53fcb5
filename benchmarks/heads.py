"""Head build and batch at circuit fidelity: the LeNet and VGG-11 x0.5 heads on 32x32 subarrays.

For each trained head (the calibrated checkpoint, as `imac simulate` uses), in this one process:

* **build**: mapping + compile at circuit fidelity with the operating-point pass, as `imac simulate`
  does; cold (empty tile cache, nothing on disk) and warm (the tile reductions in memory);
* **tile reference**: one 32x32 tile of the head factored and its transfer matrix computed by the
  circuit solver (`imac.circuit.solve.solve_subarray`, best of 5), times the number of tiles;
* **build ratio** = cold build / tile reference (target <= 3);
* **batch**: the whole test set through the compiled head at circuit fidelity against **the ideal
  product** on the same inputs (the first IMAC layer's inputs, from the CPU trunk, computed once
  outside the timings): ``head.at(Fidelity.IDEAL).run(x)``, i.e. per layer one float64 matrix
  product of the layer's inputs with its sign weights (plus the bias, times the trained volts per
  unit sum) and the trained neuron curve on the result, the binary network's math.  Best of 5
  each, the two timed alternately so that a change of load hits both; **batch ratio** = circuit /
  ideal (target <= 2), and images per second at circuit fidelity.  Where numba is installed the
  circuit batch runs the compiled loaded-neuron kernel (:mod:`imac.hardware.batch_kernels`); its
  numpy path (``IMAC_NUMBA=0``) is timed in the same rounds and reported beside it.  The kernel is
  compiled, or loaded from numba's on-disk cache, before any timing (the build's too), and that
  one-off time is reported as "kernel load";
* with ``--device cuda`` (or ``cpu``) also the circuit batch with torch tensors on that device.

Timings on a shared machine are noisy: only the ratios, measured in the same run, are compared
with targets.  ``--blas-threads 1`` pins OpenBLAS to one thread for both fidelities (on a busy
2-core machine a threaded product waits on its hand-offs).  Writes a Markdown table to stdout and,
with --out, to a file.

    python benchmarks/heads.py [--models lenet-mnist,vgg11-cifar10] [--device cuda] [--blas-threads N]
                               [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any


def bench_head(name: str, device: str | None = None, repeat: int = 5) -> dict[str, Any]:
    from imac.circuit.solve import solve_subarray
    from imac.config import ImacSpec
    from imac.hardware.batch_kernels import warm_up
    from imac.hardware.engine import Fidelity, build_head
    from imac.hardware.network import best_of, hardware_curve, imac_inputs, operating_point_inputs, select_head
    from imac.hardware.simulate import _tile_subarray, use_kernel
    from imac.hardware.tiles import default_cache
    from imac.nn.data import load_dataset

    spec = ImacSpec()
    rows = spec.subarray.rows  # the paper design: 32x32 subarrays
    model, _, _ = select_head(name, spec, rows, None, None, lambda m: None)
    test = load_dataset(model.dataset, "test")
    x = imac_inputs(model, test.images)
    x_op = operating_point_inputs(model)
    curve = hardware_curve(spec)

    def build() -> Any:  # the operating point and the neuron are inputs here: the build alone is timed
        return build_head(model, spec, Fidelity.CIRCUIT, x_op=x_op, curve=curve)

    first_call = warm_up()  # numba imported and the kernel compiled or loaded: once per process
    saved = os.environ.get("IMAC_CACHE_DIR")
    os.environ["IMAC_CACHE_DIR"] = "off"  # cold: nothing read from or written to disk
    try:
        default_cache().clear_memory()
        t0 = time.perf_counter()
        head = build()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        build()
        warm = time.perf_counter() - t0
    finally:
        if saved is None:
            os.environ.pop("IMAC_CACHE_DIR", None)
        else:
            os.environ["IMAC_CACHE_DIR"] = saved
    netmap = head.netmap
    first = max((t for lm in netmap.layers for t in lm.tiles), key=lambda t: t.weights.size)
    sub = _tile_subarray(first, netmap, True)
    one_tile = best_of(lambda: solve_subarray(sub), repeat)
    n_tiles = netmap.n_subarrays
    ideal = head.at(Fidelity.IDEAL)
    kernel = use_kernel()
    head.run(x[:64])  # warm-up

    def numpy_path() -> Any:
        saved = os.environ.get("IMAC_NUMBA")
        os.environ["IMAC_NUMBA"] = "0"
        try:
            return head.run(x)
        finally:
            if saved is None:
                os.environ.pop("IMAC_NUMBA")
            else:
                os.environ["IMAC_NUMBA"] = saved

    t_ideal = t_circuit = t_numpy = float("inf")
    for _ in range(repeat):  # alternately: a change of load on the shared machine hits all
        t_ideal = min(t_ideal, best_of(lambda: ideal.run(x), 1))
        t_circuit = min(t_circuit, best_of(lambda: head.run(x), 1))
        if kernel:
            t_numpy = min(t_numpy, best_of(numpy_path, 1))
    acc = head.accuracy(x, test.labels)
    row = {"model": name, "tiles": n_tiles, "tile_shape": list(first.shape), "build_cold_s": cold,
           "build_warm_s": warm, "one_tile_s": one_tile, "build_ratio": cold / (n_tiles * one_tile),
           "images": len(x), "ideal_s": t_ideal, "circuit_s": t_circuit, "batch_ratio": t_circuit / t_ideal,
           "images_per_s": len(x) / t_circuit, "accuracy": acc, "kernel": kernel, "first_call_s": first_call}
    if kernel:
        row.update({"numpy_s": t_numpy, "numpy_ratio": t_numpy / t_ideal, "numpy_images_per_s": len(x) / t_numpy})
    if device:
        head.run(x[:256], device=device)  # warm-up (CUDA context, kernels)
        t_dev = best_of(lambda: head.run(x, device=device), repeat)
        row.update({"device": device, "device_s": t_dev, "device_images_per_s": len(x) / t_dev})
    return row


def table(rows: list[dict[str, Any]]) -> str:
    dev = any("device" in r for r in rows)
    kernel = any(r["kernel"] for r in rows)
    head = ["head", "tiles", "build cold (s)", "build warm (s)", "one tile (s)", "build / (tiles x one tile)",
            "images", "batch circuit / ideal", "circuit images/s", "accuracy", "kernel load (s)"]
    if kernel:
        head += ["numpy path: circuit / ideal", "numpy path images/s"]
    if dev:
        head += ["device", "device images/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], str(r["tiles"]), f"{r['build_cold_s']:.2f}", f"{r['build_warm_s']:.2f}",
                 f"{r['one_tile_s']:.4f}", f"{r['build_ratio']:.2f}", str(r["images"]),
                 f"{r['batch_ratio']:.2f}" + (" (numba)" if r["kernel"] else " (numpy)"),
                 f"{r['images_per_s']:,.0f}", f"{100 * r['accuracy']:.2f} %", f"{r['first_call_s']:.2f}"]
        if kernel:
            cells += [f"{r['numpy_ratio']:.2f}", f"{r['numpy_images_per_s']:,.0f}"] if r["kernel"] else ["-", "-"]
        if dev:
            cells += [r.get("device", "-"), f"{r['device_images_per_s']:,.0f}" if "device" in r else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet-mnist,vgg11-cifar10")
    ap.add_argument("--device", default=None, help="also run the circuit batch on this torch device (cpu, cuda)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="set OPENBLAS/OMP threads (before numpy loads); default: the environment's")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.blas_threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)
    rows = []
    for name in args.models.split(","):
        print(f"[heads] {name}", file=sys.stderr)
        rows.append(bench_head(name, args.device, args.repeat))
    text = table(rows)
    print(text)
    if args.out:
        from imac.io import atomic_write_text

        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
