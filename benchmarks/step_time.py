"""Milliseconds per training step of a registered model at batch 32: where the time of a step goes.

    .venv/bin/python benchmarks/step_time.py --model baseline --steps 400

Times fmnist's own training step (uint8 batch gathered from the resident training set, channels-last
model, cross-entropy, SGD with momentum, loss and accuracy summed on the device) under bf16 autocast and
in fp32, and in bf16 with the model in the default (NCHW) layout instead of channels-last, each with
SGD's three update kernels: the per-parameter loop, `foreach` and `fused`. 50 steps of warm-up are
excluded; the figure is the mean over the next --steps steps.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

import fmnist
from fmnist import models


def step_ms(name: str, images: torch.Tensor, labels: torch.Tensor, steps: int, bf16: bool, kernel: str,
            channels_last: bool = True) -> float:
    torch.manual_seed(0)
    model = models.create(name)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    options = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kernel]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, **options)
    order = torch.randperm(len(images))
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)

    def step(i: int) -> None:
        nonlocal loss_sum, correct
        batch = order[i * 32 : (i + 1) * 32]
        xb, yb = images[batch], labels[batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()

    for i in range(50):
        step(i)
    started = time.perf_counter()
    for i in range(50, 50 + steps):
        step(i)
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="baseline", choices=models.names())
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    if args.steps * 32 + 50 * 32 > 60_000:
        parser.error("--steps: at most 1,825 (one pass over the 60,000 training images)")
    data = fmnist.load_dataset(download=False)
    images = torch.from_numpy(data.train.images).unsqueeze(1)
    labels = torch.from_numpy(data.train.labels).long()
    print(f"| {args.model}, batch 32 | per-parameter loop | foreach | fused |")
    print("|---|---|---|---|")
    for label, bf16, channels_last in (("bf16 autocast", True, True), ("fp32", False, True),
                                       ("bf16 autocast, NCHW layout", True, False)):
        cells = [f"{step_ms(args.model, images, labels, args.steps, bf16, kernel, channels_last):.2f} ms"
                 for kernel in ("loop", "foreach", "fused")]
        print(f"| {label} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
