"""Where a training step's time goes: torch.profiler over fmnist's step, and who calls the copies.

    .venv/bin/python benchmarks/step_profile.py --model baseline --batch 32 --steps 200
    .venv/bin/python benchmarks/step_profile.py --model fast --batch 256 --steps 20 --threads 2

The step as the trainer takes it (a uint8 batch gathered from the resident training set, channels-last
model, cross-entropy, SGD with momentum 0.9). fmnist is imported before torch, so its OpenMP default
(runtime.py: GOMP_SPINCOUNT=1000) applies as in the CLI. Prints milliseconds per step (untimed warm-up first),
the operators by their own time per step, and for every copy, fill, add and mul: its shape and the
operators above it (a layout conversion shows as a copy under the operator that asked for it).
One process, one pass: a profile, not a benchmark; step_time.py and layout_ab.py measure speed.
"""

from __future__ import annotations  # noqa: I001  (fmnist is imported before torch on purpose)

import argparse
import collections
import os
import time

import fmnist  # before torch: fmnist's OpenMP default reaches libgomp, as in the CLI
import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from fmnist import models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    parser.add_argument("--layout", choices=("channels_last", "contiguous"), default="channels_last")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = fmnist.load_dataset(download=False)
    images = torch.from_numpy(data.train.images).unsqueeze(1)
    labels = torch.from_numpy(data.train.labels).long()
    model = models.create(args.model)
    if args.layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(images))

    def step(i: int) -> None:
        batch = order[(i * args.batch) % len(order):][:args.batch]
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(20):
        step(i)
    started = time.perf_counter()
    for i in range(20, 20 + args.steps):
        step(i)
    ms = (time.perf_counter() - started) / args.steps * 1000
    print(f"{args.model}, batch {args.batch}, {args.layout}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}: {ms:.2f} ms per step (unprofiled)")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(args.steps):
            step(i)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=44))
    callers: dict[tuple[str, str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for event in prof.events():
        if event.name in ("aten::copy_", "aten::fill_", "aten::add_", "aten::mul_"):
            chain, parent = [], event.cpu_parent
            while parent is not None and len(chain) < 3:
                chain.append(parent.name)
                parent = parent.cpu_parent
            key = (event.name, str(event.input_shapes[0]) if event.input_shapes else "", " < ".join(chain))
            callers[key][0] += 1
            callers[key][1] += event.self_cpu_time_total
    print("ms per step  calls per step  operator  shape  <- callers")
    for (name, shape, chain), (count, micros) in sorted(callers.items(), key=lambda item: -item[1][1])[:12]:
        print(f"{micros / args.steps / 1000:8.3f}  {count / args.steps:5.1f}  {name} {shape} <- {chain[:120]}")


if __name__ == "__main__":
    main()
