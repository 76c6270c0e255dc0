"""Training steps with glibc's malloc as it comes against fmnist's setting (fmnist/runtime.py keeps freed memory):
milliseconds, page faults and kernel time per step.

    .venv/bin/python benchmarks/page_faults.py --repeats 3                       # baseline b32, minivgg b32, fast b256
    .venv/bin/python benchmarks/page_faults.py --models baseline --threads 1,2 --isa avx2

Each measurement is a process of its own (glibc's malloc settings are per process): FMNIST_MALLOC=glibc leaves
malloc alone, the other runs with what fmnist's trainer sets (runtime.keep_freed_memory). The step is the trainer's (a uint8 batch gathered
from the resident training set, channels-last model, cross-entropy, SGD with momentum 0.9, fp32), --warmup steps
untimed, then --steps timed: wall milliseconds, minor page faults (getrusage; every thread of the process) and
system CPU milliseconds per step. Runs alternate between the two settings, rotated each repeat; mean ± std over
--repeats. Markdown on stdout; every run in --results with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import ISAS, describe, isa_environment, machine, spread  # noqa: E402  (benchmarks/machine.py)

SETTINGS = {"glibc's defaults": {"FMNIST_MALLOC": "glibc"}, "fmnist's (keep freed memory)": {}}
BATCHES = {"baseline": 32, "minivgg": 32, "fast": 256}


def child(spec: dict) -> None:
    """One measurement in this process; prints one JSON line."""
    import resource  # the child's imports are here: the parent never loads torch or fmnist's settings

    import fmnist  # before torch: its runtime settings apply, as in the CLI
    import torch
    from torch.nn import functional as F

    from fmnist import models, runtime

    torch.set_num_threads(spec["threads"])
    runtime.keep_freed_memory()  # as the trainer's set-up does; FMNIST_MALLOC=glibc makes it a no-op
    torch.manual_seed(0)
    data = fmnist.load_dataset(download=False)
    images = torch.from_numpy(data.train.images).unsqueeze(1)
    labels = torch.from_numpy(data.train.labels).long()
    model = models.pool_before_activation(models.create(spec["model"]).to(memory_format=torch.channels_last))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(images))
    batch = BATCHES[spec["model"]]

    def step(i: int) -> None:
        chosen = order[(i * batch) % len(order):][:batch]
        loss = F.cross_entropy(model(images[chosen]), labels[chosen])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(spec["warmup"]):
        step(i)
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(spec["warmup"], spec["warmup"] + spec["steps"]):
        step(i)
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"ms_per_step": seconds / spec["steps"] * 1000,
                      "faults_per_step": (after.ru_minflt - before.ru_minflt) / spec["steps"],
                      "system_ms_per_step": (after.ru_stime - before.ru_stime) / spec["steps"] * 1000,
                      "kept": runtime.kept_freed_memory, "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="baseline,minivgg,fast", help=f"any of {', '.join(BATCHES)}")
    parser.add_argument("--threads", default="2", help="intra-op thread counts, comma-separated")
    parser.add_argument("--isa", choices=sorted(ISAS), default="native")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 300 at batch 32, 30 at 256)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "page_faults.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if set(names) - set(BATCHES):
        parser.error(f"--models: any of {', '.join(BATCHES)}")
    threads = [int(value) for value in args.threads.split(",")]
    variants = [(model, count, setting) for model in names for count in threads for setting in SETTINGS]
    runs: dict[str, list[dict]] = {json.dumps(variant): [] for variant in variants}
    recorded, started = machine(), time.perf_counter()
    for repeat in range(args.repeats):
        shift = repeat % len(variants)
        for model, count, setting in variants[shift:] + variants[:shift]:
            spec = {"model": model, "threads": count, "warmup": args.warmup,
                    "steps": args.steps or (300 if BATCHES[model] == 32 else 30)}
            env = isa_environment(args.isa, {**os.environ, **SETTINGS[setting]})
            done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                                  text=True, timeout=1800)
            if done.returncode != 0:
                sys.exit(f"{model}, {count} threads, {setting}: {done.stderr.strip()[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[json.dumps((model, count, setting))].append(result)
            print(f"# repeat {repeat + 1}: {model}, {count} threads, {setting}: {result}", file=sys.stderr, flush=True)
    lines = [f"Per training step, mean ± std over {args.repeats} processes ({describe(recorded)}; isa {args.isa})", "",
             "| model, batch | threads | malloc | ms per step | page faults per step | kernel (system) ms per step |",
             "|---|---|---|---|---|---|"]
    for model, count, setting in variants:
        rows = runs[json.dumps((model, count, setting))]
        lines.append(f"| {model}, {BATCHES[model]} | {count} | {setting} | "
                     f"{spread([row['ms_per_step'] for row in rows], 2)} | "
                     f"{spread([row['faults_per_step'] for row in rows], 0)} | "
                     f"{spread([row['system_ms_per_step'] for row in rows], 2)} |")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"command": " ".join([Path(sys.executable).name, *sys.argv]), "isa": args.isa,
                                        "machine": recorded, "wall_seconds": time.perf_counter() - started,
                                        "runs": runs}, indent=2) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.results}")


if __name__ == "__main__":
    main()
