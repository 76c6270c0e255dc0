"""Many processes under torchrun against one process, on this machine's CPU cores.

    .venv/bin/python benchmarks/distributed.py --repeats 3 --beside nothing

(results/distributed.json; about 10 minutes on 2 cores.)

Two workloads, each configuration a fresh command as a user types it, repeats interleaved (repeat →
workload → configuration) so that drift spreads over the configurations:

- `train`: write-up 000's baseline recipe (SGD 0.01, momentum 0.9, batch 32) on the first --limit
  training images, --epochs epochs, 50 images per class held out. Throughput = images trained ÷ the
  epochs' seconds (history.csv: training only, not start-up or validation); also the command's wall
  time and the test accuracy (the same recipe: it must not move).
- `cv`: 5-fold cross-validation of the same recipe, one epoch per fold: wall time of the command.

Configurations: one process with every core's thread (`--threads 0`), one process with one thread, and
`torchrun --standalone --nproc-per-node 2` (gloo; each process one thread: its share of 2 cores).
Reported: mean ± std over the repeats, the machine (CPU, its AVX/AMX/FMA flags, cores, load average
before each run) and what ran beside.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine, spread

HERE = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
FMNIST = [sys.executable, "-m", "fmnist"]
CONFIGS = {
    "1 process, 2 threads": (FMNIST, ["--threads", "0"]),
    "1 process, 1 thread": (FMNIST, ["--threads", "1"]),
    "torchrun, 2 processes × 1 thread": (TORCHRUN + ["-m", "fmnist"], ["--threads", "0"]),
}


def run(prefix: list[str], command: list[str], out: Path) -> float:
    started = time.perf_counter()
    environ = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    environ.pop("OMP_NUM_THREADS", None)
    result = subprocess.run([*prefix, *command, "--out", str(out), "--quiet"], capture_output=True, text=True,
                            env=environ)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(prefix + command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def measure(workload: str, name: str, args, scratch: Path) -> dict:
    prefix, extra = CONFIGS[name]
    out = scratch / f"{workload}-{name.split(',')[0].replace(' ', '-')}-{time.monotonic_ns()}"
    recipe = ["--model", "baseline", "--limit", str(args.limit), "--checkpoint", "none", *extra]
    load = os.getloadavg()[0]
    if workload == "train":
        wall = run(prefix, ["train", *recipe, "--epochs", str(args.epochs), "--val", "balanced:50"], out)
        metrics = json.loads((out / "metrics.json").read_text())
        images = metrics["train_images"] * metrics["epochs_run"]
        return {"wall_seconds": wall, "images_per_second": images / metrics["train_seconds"],
                "test_accuracy": metrics["test_accuracy"], "load_before": load}
    wall = run(prefix, ["cv", *recipe, "--epochs", "1", "--folds", "5"], out)
    summary = json.loads((out / "cv.json").read_text())
    return {"wall_seconds": wall, "mean_accuracy": summary["models"][0]["mean"], "load_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=12000, help="training images of every run")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the train workload")
    parser.add_argument("--workloads", default="train,cv")
    parser.add_argument("--beside", default="nothing", help="what else ran on the machine, in words")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "distributed.json")
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    runs: dict[str, dict[str, list[dict]]] = {workload: {name: [] for name in CONFIGS} for workload in workloads}
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as scratch:
        for repeat in range(args.repeats):
            for workload in workloads:
                for name in CONFIGS:
                    runs[workload][name].append(measure(workload, name, args, Path(scratch)))
                    print(f"repeat {repeat + 1}, {workload}, {name}: {runs[workload][name][-1]}", file=sys.stderr)
    results = {"command": " ".join(["benchmarks/distributed.py", *sys.argv[1:]]), "machine": machine(),
               "beside": args.beside, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "limit": args.limit, "epochs": args.epochs, "runs": runs}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    part = args.results.with_suffix(".json.part")
    part.write_text(json.dumps(results, indent=1))
    part.replace(args.results)
    print(f"| configuration | {' | '.join(workloads)} |\n|---|{'---|' * len(workloads)}")
    for name in CONFIGS:
        cells = []
        for workload in workloads:
            rows = runs[workload][name]
            if workload == "train":
                cells.append(f"{spread([row['images_per_second'] for row in rows], 0)} images/s, "
                             f"{spread([row['wall_seconds'] for row in rows])} s wall, test accuracy "
                             f"{spread([row['test_accuracy'] * 100 for row in rows], 2)} %")
            else:
                cells.append(f"{spread([row['wall_seconds'] for row in rows])} s wall, mean fold accuracy "
                             f"{spread([row['mean_accuracy'] * 100 for row in rows], 2)} %")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
