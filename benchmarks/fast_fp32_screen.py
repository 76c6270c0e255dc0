"""Which smaller `fast` net reaches 93 % soonest in fp32: the screening behind the recipe's fp32 values.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python benchmarks/fast_fp32_screen.py speed                          # ms per step, every variant
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python benchmarks/fast_fp32_screen.py train w8-16-48-128:8:1:lr=0.2 ...  # NAME:EPOCHS:SEED[:KEY=VALUE]

The `fast` recipe held to fp32 (the environment above emulates an AVX2-only CPU, where `--precision auto` trains
in fp32) trains at about 76 % of the CPU's sgemm peak in FLOPs per second, so it cannot get much faster per FLOP: this
script tries nets with fewer FLOPs. Variants, registered here only: `wA-B-C-D` is FastNet with those widths
(stem, then three conv → pool → BN → ReLU blocks); `pfA-B-C-D` pools before block 1's convolution (it runs at
14×14); `s2dA-B-C` starts from a pixel-unshuffled 14×14×4 image (no 28×28 maps at all).

`speed`: the training step at batch 256 (the recipe's step: channels-last, max-pool before ReLU, Nesterov SGD,
label smoothing), best of 3 × 10 steps after 5 untimed, and the epoch that implies (235 steps). `train`: the
recipe (`build_config(recipe="fast", ...)`) with the variant's model and the given epochs, seed and values,
validating on the test set after each epoch (not timed); one JSON line per run is appended to
benchmarks/results/fast_fp32_screen.jsonl. One seed per run: a screen, not a result; fast_recipe.py measures
the choice over seeds.
"""

from __future__ import annotations  # noqa: I001  (fmnist is imported before torch on purpose)

import argparse
import json
import os
import time
from pathlib import Path

import fmnist  # before torch: fmnist's OpenMP default reaches libgomp, as in the CLI
import torch
from torch import nn
from torch.nn import functional as F

from fmnist import models, runtime
from fmnist.models.fast import FastNet
from fmnist.models.registry import register

HERE = Path(__file__).resolve().parent
STEPS_PER_EPOCH = 235  # 60,000 images at batch 256


class PoolFirst(FastNet):
    """Block 1 max-pools before its convolution, which then runs at 14×14."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__(widths=widths)
        self.blocks[0] = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(widths[0], widths[1], 3, padding=1, bias=False),
                                       nn.BatchNorm2d(widths[1]), nn.ReLU())


class SpaceToDepth(FastNet):
    """28×28×1 → 14×14×4 (pixel unshuffle) in front of FastNet's stem, which then runs at 14×14."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__(in_channels=4, widths=widths)
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), self.stem)


def _widths(name: str) -> tuple[int, ...]:
    for prefix in ("s2d", "pf", "w"):
        if name.startswith(prefix):
            return tuple(int(part) for part in name[len(prefix):].split("-"))
    raise ValueError(f"unknown variant {name!r}")


VARIANTS = ["w16-32-64-128", "w16-24-48-96", "w12-24-48-96", "w16-32-48-96", "w16-24-64-128", "w16-32-64-96",
            "w8-24-48-96", "w8-32-64-128", "w8-16-64-128", "w8-24-64-128", "w16-24-48-128", "w8-16-48-128",
            "pf16-32-64-128", "pf24-48-96-192", "pf32-64-128-128", "s2d32-64-128", "s2d48-64-128",
            "s2d32-64-128-256", "s2d24-48-96"]


def build(name: str) -> nn.Module:
    if name.startswith("pf"):
        return PoolFirst(_widths(name))
    if name.startswith("s2d"):
        return SpaceToDepth(_widths(name))
    return FastNet(widths=_widths(name))


for _name in VARIANTS:
    register(f"screen-{_name}", f"fast_fp32_screen.py's {_name}")(
        lambda num_classes=10, in_channels=1, _name=_name: build(_name))


def speed(names: list[str]) -> None:
    runtime.keep_freed_memory()
    x, y = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,))
    for name in names:
        torch.manual_seed(0)
        model = models.pool_before_activation(build(name).to(memory_format=torch.channels_last)).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)

        def step() -> None:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(5):
            step()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(10):
                step()
            times.append((time.perf_counter() - started) / 10)
        ms = min(times) * 1000
        print(f"{name:16s} {ms:6.1f} ms per step  ~{ms * STEPS_PER_EPOCH / 1000:5.1f} s per epoch", flush=True)


def train(specs: list[str]) -> None:
    from fast_recipe import run  # beside this script; here because only `train` needs it
    from machine import ISAS  # beside this script, likewise

    dataset = fmnist.load_dataset(download=False)
    types = {"batch_size": int, "lr": float, "label_smoothing": float, "augment": str}
    with open(HERE / "results" / "fast_fp32_screen.jsonl", "a", encoding="utf-8") as out:
        for spec in specs:
            name, epochs, seed, *rest = spec.split(":")
            changes = {"model": f"screen-{name}", "epochs": int(epochs)}
            for item in rest:
                key, value = item.split("=")
                changes[key] = types[key](value)
            # A model of the layer above the recipe keeps the recipe's own values (lr 0.1; engine/recipes.py).
            result = {"variant": spec, "changes": changes, "isa_environment": {key: os.environ.get(key) for key in ISAS["avx2"]},
                      "date": time.strftime("%Y-%m-%d"), **run(changes, int(seed), dataset, 0.93)}
            out.write(json.dumps(result) + "\n")
            out.flush()
            print(f"{spec}: final {result['final']:.4f}, 93 % at {result['time_to_target']}, "
                  f"{result['seconds_per_epoch']:.1f} s per epoch, by epoch "
                  f"{[round(row['test_accuracy'], 4) for row in result['epochs']]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("speed", "train"))
    parser.add_argument("variants", nargs="*", help="speed: names (default: all); train: NAME:EPOCHS:SEED[:KEY=VALUE]")
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.variants or VARIANTS)
    else:
        train(args.variants)


if __name__ == "__main__":
    main()
