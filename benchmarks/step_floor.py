"""Where a batch-32 training step's time goes, against half of Keras's step (issue 18's second target): how much
of fmnist's step is the matrix products and convolutions (MKL and oneDNN), and what those FLOPs would take at
the machine's own peak.

    .venv/bin/python benchmarks/step_floor.py                                   # baseline, minivgg; native, avx2
    .venv/bin/python benchmarks/step_floor.py --models baseline --repeats 3 --keras-epochs 2

For every model and instruction set (`avx2`: an AVX2-only CPU emulated, machine.ISAS), --repeats processes each
build fmnist's training step (step_time.trainer_step: the trainer's step, in the precision `--precision auto`
picks there, SGD's per-parameter loop as the trainer runs it) and measure
- its milliseconds per step, unprofiled (mean over --steps after --warmup);
- the same steps under torch.profiler (no shapes recorded): the self time of the operators that carry the
  FLOPs (matrix products, convolutions forward and backward), per step: what the step spends in MKL's and
  oneDNN's kernels where the trainer calls them;
- one step's FLOPs (torch.utils.flop_counter) and the peak of a 2048² matrix product in the step's dtype, same
  threads and ISA: what those FLOPs would take at that peak, the floor for any kernel.
Then Keras runs the write-up's recipe (vs_keras.py's worker, same ISA) for --keras-epochs epochs; its step is
the later epochs' mean seconds over 1,875 steps (60,000 images at batch 32). Figures: mean ± std over the
repeats; every run in --results with the machine and what ran beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import ISAS, describe, isa_environment, machine, spread, write_results  # noqa: E402  (beside)

# Importing fmnist before torch sets its OpenMP default (GOMP_SPINCOUNT=1000, runtime.py), which libgomp reads once
# when torch loads: the child processes inherit it and step as the trainer does. Keras's worker runs without it
# (vs_keras.run_worker removes what fmnist set).
import fmnist  # noqa: E402,F401,I001

STEPS_PER_KERAS_EPOCH = 60_000 // 32
# The operators whose self time is MKL's or oneDNN's arithmetic (layout reorders and casts are copies of their own).
FLOP_OPERATORS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution_backward",
                  "aten::mkldnn_matmul", "aten::_convolution")


def measure(model: str, warmup: int, steps: int) -> dict:
    """In this process: the step's milliseconds, its FLOP operators' self time, its FLOPs and the matrix peak."""
    import torch  # here: the parent process never loads torch's kernels
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from fmnist.device import resolve_precision
    from step_time import trainer_step

    precision = "fp32" if resolve_precision("auto", torch.device("cpu")) is None else "bf16"
    step, result = trainer_step({"model": model, "precision": precision, "layout": "channels_last",
                                 "kernel": "loop", "compile": "none"})
    for i in range(warmup):
        step(i)
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    ms_per_step = (time.perf_counter() - started) / steps * 1000
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        for i in range(steps):
            step(i)
    self_us = {}
    for event in profiled.key_averages():
        self_us[event.key] = self_us.get(event.key, 0.0) + event.self_cpu_time_total
    flop_ms = sum(self_us.get(name, 0.0) for name in FLOP_OPERATORS) / steps / 1000
    with FlopCounterMode(display=False) as counter:
        step(0)
    return {"precision": precision, "ms_per_step": ms_per_step, "flop_operators_ms": flop_ms,
            "profiled_ms": sum(self_us.values()) / steps / 1000, "gflop_per_step": counter.get_total_flops() / 1e9,
            "peak_gflops": _matrix_peak(torch.bfloat16 if precision == "bf16" else torch.float32),
            "mean_loss": result()["loss_sum"] / ((2 * steps + warmup + 1) * 32), "threads": torch.get_num_threads()}


def _matrix_peak(dtype, size: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of torch.mm on two size² matrices of `dtype` (the best of `repeats`, after a warm-up)."""
    import torch  # here: measured in the child, under its instruction set

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    best = float("inf")
    for i in range(repeats + 2):
        started = time.perf_counter()
        torch.mm(a, b)
        if i >= 2:
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def run_child(model: str, isa: str, args) -> dict:
    with tempfile.TemporaryDirectory() as folder:  # a file, not stdout: the profiler writes there from C
        out = Path(folder) / "measured.json"
        command = [sys.executable, __file__, "--child", model, "--child-out", str(out), "--warmup", str(args.warmup),
                   "--steps", str(args.steps)]
        done = subprocess.run(command, env=isa_environment(isa), capture_output=True, text=True, timeout=args.timeout)
        if done.returncode != 0 or not out.is_file():  # recorded, and the other runs go on
            return {"error": (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]}
        return json.loads(out.read_text())


def keras_step_ms(models: list[str], isas: list[str], epochs: int) -> dict:
    """Keras's milliseconds per step for each (model, isa): the write-up's recipe, one seed, epochs 2.. averaged."""
    from vs_keras import fill_keras_cache, run_worker, summarise  # here: only the Keras side needs it

    found = {}
    with tempfile.TemporaryDirectory() as keras_home:
        fill_keras_cache(Path(keras_home))
        for model in models:
            for isa in isas:
                rows = run_worker("keras", model, epochs, 1, Path(keras_home), quiet=False, isa=isa)
                seconds = summarise([rows], None)["seconds_per_epoch"]["mean"]
                found[f"{model} {isa}"] = {"seconds_per_epoch": seconds, "epochs": rows,
                                           "ms_per_step": seconds / STEPS_PER_KERAS_EPOCH * 1000}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="baseline,minivgg", help="write-up recipes: baseline and/or minivgg")
    parser.add_argument("--isas", default="native,avx2", help=f"any of {', '.join(ISAS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--keras-epochs", type=int, default=2, help="Keras epochs per model and ISA (0: no Keras)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed to one process")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "step_floor.json")
    parser.add_argument("--beside", default="nothing", help="what else ran on the machine, recorded with the figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.child_out.write_text(json.dumps(measure(args.child, args.warmup, args.steps)))
        return
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    isas = [name.strip() for name in args.isas.split(",") if name.strip()]
    if (not models or set(models) - {"baseline", "minivgg"} or not isas or set(isas) - set(ISAS)
            or args.keras_epochs == 1 or args.keras_epochs < 0 or min(args.repeats, args.steps) < 1 or args.warmup < 0):
        parser.error(f"--models: baseline, minivgg; --isas: {', '.join(ISAS)}; --keras-epochs: 0 or at least 2; "
                     "--repeats and --steps: at least 1")
    started, before = time.strftime("%Y-%m-%d %H:%M:%S %Z"), machine()  # the load before this script's own work
    pairs = [(model, isa) for model in models for isa in isas]
    runs: dict[str, list[dict]] = {f"{model} {isa}": [] for model, isa in pairs}
    for repeat in range(args.repeats):
        shift = repeat % len(pairs)
        for model, isa in pairs[shift:] + pairs[:shift]:
            runs[f"{model} {isa}"].append(run_child(model, isa, args))
            print(f"# repeat {repeat + 1}/{args.repeats} {model} {isa}: {runs[f'{model} {isa}'][-1]}", file=sys.stderr,
                  flush=True)
    keras = keras_step_ms(models, isas, args.keras_epochs) if args.keras_epochs else {}
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "started": started, "machine": before,
               "beside": args.beside, "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                                                   "keras_epochs": args.keras_epochs},
               "fmnist": runs, "keras": keras}
    write_results(args.results, results)
    report(results)


def report(results: dict) -> None:
    print(f"{describe(results['machine'])}; beside: {results['beside']}; ms per step at batch 32, mean ± std over "
          f"{results['settings']['repeats']} processes\n")
    print("| model, ISA (precision) | fmnist's step | its matrix products and convolutions | the same FLOPs at "
          "the matrix peak | Keras's step | half of Keras's step |")
    print("|---|---|---|---|---|---|")
    for key, all_runs in results["fmnist"].items():
        runs = [run for run in all_runs if "error" not in run]
        if not runs:
            print(f"| {key} | failed: {all_runs[0]['error']} | | | | |")
            continue
        floor = [run["gflop_per_step"] / run["peak_gflops"] * 1000 for run in runs]
        keras = results["keras"].get(key)
        keras_cells = f"{keras['ms_per_step']:.2f} | {keras['ms_per_step'] / 2:.2f}" if keras else "— | —"
        print(f"| {key} ({runs[0]['precision']}) | {spread([run['ms_per_step'] for run in runs], 2)} | "
              f"{spread([run['flop_operators_ms'] for run in runs], 2)} | {statistics.mean(floor):.2f} "
              f"({runs[0]['gflop_per_step']:.3f} GFLOP at {statistics.mean(run['peak_gflops'] for run in runs):.0f} "
              f"GFLOP/s) | {keras_cells} |")


if __name__ == "__main__":
    main()
