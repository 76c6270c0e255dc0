"""Seconds per training epoch against torch's thread settings, on an idle CPU and beside a busy process.

    .venv/bin/python benchmarks/threads.py --repeats 3 --images 4000 --config "2 threads (torch's default)" \
        --config "1 thread" --config "2 threads, OMP_WAIT_POLICY=PASSIVE" --config "2 threads, interop threads 1"

(results/threads.json; 50 minutes on a shared 2-core machine at load 9-13; every configuration, the
default, takes half as long again.)

Two workloads, each one epoch of fmnist's own trainer (`fit`, fp32, no checkpoint, validation on 1,000
test images, not timed) on the first --images training images: the `baseline` recipe at batch 32
(small operators, many steps) and the `fast` recipe at batch 256. Each configuration runs in a fresh
process, because OpenMP reads its environment (OMP_WAIT_POLICY, GOMP_SPINCOUNT) once, when torch loads
libgomp: the child imports torch before fmnist, so fmnist's own defaults do not touch these runs.

Configurations: intra-op threads 1 and 2, libgomp's default waiting (spin 300,000 times before
sleeping) against OMP_WAIT_POLICY=PASSIVE (sleep at once), GOMP_SPINCOUNT=10000 and 1000, and
torch.set_num_interop_threads(1). Each runs idle and again beside one competing process (a Python busy
loop, `while True: pass`, at normal priority, started for the block and killed after it). Repeats are
interleaved (repeat → load → workload → configuration) so drift spreads across configurations.
Reported: seconds of the epoch (the first step included, as a user sees it), mean ± std over repeats.
The load average and the busiest other processes are recorded before every block: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name → (intra-op threads, environment added, interop threads or None)
CONFIGS = {
    "2 threads (torch's default)": (2, {}, None),
    "1 thread": (1, {}, None),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "1 thread, OMP_WAIT_POLICY=PASSIVE": (1, {"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "2 threads, GOMP_SPINCOUNT=10000": (2, {"GOMP_SPINCOUNT": "10000"}, None),
    "2 threads, GOMP_SPINCOUNT=1000": (2, {"GOMP_SPINCOUNT": "1000"}, None),
    "2 threads, interop threads 1": (2, {}, 1),
}
WORKLOADS = {"baseline, batch 32": "baseline", "fast, batch 256": "fast"}
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME")


def child(spec: dict) -> None:
    """One epoch in this process; prints one JSON line."""
    import torch  # before fmnist: the OpenMP environment is the parent's, untouched

    if spec["interop"] is not None:
        torch.set_num_interop_threads(spec["interop"])
    import tempfile

    import fmnist
    from fmnist.engine.config import build_config
    from fmnist.engine.trainer import fit

    dataset = fmnist.load_dataset(download=False).limit(train=spec["images"], test=1000)
    # the recipe with its own model (fast; in fp32 the recipe would pick fast-narrow, engine/recipes.py)
    recipe = {"recipe": "fast", "model": "fast"} if spec["workload"] == "fast" else {"model": "baseline"}
    config = build_config(**recipe, epochs=1, seed=1, device="cpu", precision="fp32", checkpoint="none",
                          val="test", threads=spec["threads"])  # fit sets the threads it is given
    with tempfile.TemporaryDirectory() as out:
        result = fit(config, Path(out) / "run", dataset=dataset)
    print(json.dumps({"seconds": result.history[0]["seconds"], "torch_threads": torch.get_num_threads(),
                      "interop_threads": torch.get_num_interop_threads()}))


def run_one(workload: str, config: str, images: int) -> dict:
    threads, env_added, interop = CONFIGS[config]
    env = {key: value for key, value in os.environ.items() if key not in OMP_VARIABLES}
    env.update(env_added)
    spec = {"workload": workload, "threads": threads, "interop": interop, "images": images}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_load() -> dict:
    """The load average and the five busiest processes (ps), as a record of how idle the machine was."""
    top = subprocess.run(["ps", "-eo", "pid,ni,pcpu,etime,comm", "--sort=-pcpu"], capture_output=True,
                         text=True).stdout.splitlines()[:6]
    return {"loadavg": os.getloadavg(), "top": top}


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return " ".join(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=12_000, help="training images per epoch")
    parser.add_argument("--workload", choices=sorted(WORKLOADS.values()), action="append",
                        help="only these workloads (default: both)")
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append", help="only these configurations")
    parser.add_argument("--load", choices=("idle", "busy"), action="append", help="only these loads")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "threads.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    workloads = [name for name, key in WORKLOADS.items() if not args.workload or key in args.workload]
    configs = args.config or list(CONFIGS)
    loads = args.load or ["idle", "busy"]
    times: dict[str, list[float]] = {}
    blocks = []
    started = time.perf_counter()
    for repeat in range(1, args.repeats + 1):
        for load in loads:
            busy = None
            if load == "busy":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            blocks.append({"repeat": repeat, "load": load, "before": machine_load()})
            try:
                for workload in workloads:
                    for config in configs:
                        result = run_one(WORKLOADS[workload], config, args.images)
                        times.setdefault(f"{workload}|{config}|{load}", []).append(result["seconds"])
                        print(f"  repeat {repeat}, {load}, {workload}, {config}: {result['seconds']:.2f} s "
                              f"({result['torch_threads']} threads, interop {result['interop_threads']})",
                              file=sys.stderr, flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    report = {
        "images": args.images, "repeats": args.repeats,
        "machine": f"{cpu_model()}, {os.cpu_count()} CPU cores ({cpu_flags()}), {platform.machine()}",
        "torch": __import__("torch").__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_seconds": time.perf_counter() - started, "blocks": blocks,
        "seconds": times,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    def cell(key: str) -> str:
        values = times.get(key)
        if not values:
            return "—"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} ± {spread:.2f}"

    columns = [(w, load) for w in workloads for load in loads]
    print("| configuration | " + " | ".join(f"{w}, {load}" for w, load in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for config in configs:
        print(f"| {config} | " + " | ".join(cell(f"{w}|{config}|{load}") for w, load in columns) + " |")
    print(f"seconds per epoch of {args.images:,} images, mean ± std over {args.repeats} runs; wrote {args.out}")


if __name__ == "__main__":
    main()
