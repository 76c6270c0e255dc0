"""One change to a write-up model against the model without it, timed in one process: `--change flatten`
(fmnist's layout-keeping Flatten against torch's nn.Flatten) or `--change reorder` (max-pool before the
activation, models/reorder.py, against the write-up's order).

    .venv/bin/python benchmarks/layout_ab.py --model baseline --pairs 40 --steps 25
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/layout_ab.py --model baseline --pairs 40 --steps 25
    .venv/bin/python benchmarks/layout_ab.py --change reorder --model baseline --pairs 40 --steps 25

Two copies of the model (the same weights, the same batches, channels-last as the trainer keeps it)
differ only in the change; blocks of --steps training steps at batch 32 alternate between them (the
order flipping every pair), so adjacent blocks share the machine's state and the per-pair ratio cancels
most of its drift (this project's machine moves by a quarter within minutes, which one process per
variant cannot resolve for a 2 ms difference). fmnist is imported before torch, so its runtime settings
apply as in the CLI. Prints ms per step of each (mean ± std, median) and the ratio (with / without) per pair.
"""

from __future__ import annotations  # noqa: I001  (fmnist is imported before torch on purpose)

import argparse
import copy
import statistics
import time

import fmnist  # before torch: fmnist's OpenMP default reaches libgomp, as in the CLI
import torch
from torch import nn
from torch.nn import functional as F

from fmnist import models
from fmnist.models.layers import Flatten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--change", choices=("flatten", "reorder"), default="flatten")
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25, help="steps per block")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = fmnist.load_dataset(download=False)
    images = torch.from_numpy(data.train.images).unsqueeze(1)
    labels = torch.from_numpy(data.train.labels).long()
    ours = models.create(args.model).to(memory_format=torch.channels_last)
    without = copy.deepcopy(ours)
    if args.change == "flatten":
        swapped = 0
        for parent in without.modules():
            for name, child in parent.named_children():
                if isinstance(child, Flatten):
                    setattr(parent, name, nn.Flatten())
                    swapped += 1
        if not swapped:
            raise SystemExit(f"{args.model} has no Flatten layer to compare")
        arm_names = ("nn.Flatten", "fmnist Flatten")
    else:
        reordered = models.pool_before_activation(ours)
        if reordered is ours:
            raise SystemExit(f"{args.model} has no activation right before a max-pool")
        ours = reordered
        arm_names = ("write-up order", "max-pool first")
    arms = {label: (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
            for label, model in zip(arm_names, (without, ours))}
    order = torch.randperm(len(images))

    def block(label: str, start: int) -> float:
        model, optimizer = arms[label]
        started = time.perf_counter()
        for i in range(start, start + args.steps):
            batch = order[(i * 32) % len(order):][:32]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / args.steps * 1000

    for label in arms:
        block(label, 0)  # warm-up
    ms: dict[str, list[float]] = {label: [] for label in arms}
    for pair in range(args.pairs):
        for label in (list(arms) if pair % 2 == 0 else list(arms)[::-1]):
            ms[label].append(block(label, (pair + 1) * args.steps))
    ratios = [a / b for a, b in zip(ms[arm_names[1]], ms[arm_names[0]])]
    cells = [f"{label} {statistics.mean(v):.2f} ± {statistics.stdev(v):.2f} ms/step (median {statistics.median(v):.2f})"
             for label, v in ms.items()]
    print(f"{args.model}, batch 32, {torch.get_num_threads()} threads, {args.pairs} pairs of {args.steps}-step blocks: "
          + "; ".join(cells) + f"; ratio per pair {statistics.mean(ratios):.3f} ± {statistics.stdev(ratios):.3f} "
          f"(median {statistics.median(ratios):.3f})")


if __name__ == "__main__":
    main()
