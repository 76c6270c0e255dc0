"""Milliseconds per training step at batch 32, and what changes them: the CPU's instruction set, the
precision, the memory layout, the optimizer's update kernel, torch.compile, splitting the batch over threads,
the dropout module.

    .venv/bin/python benchmarks/step_time.py                                  # baseline: every variant, 5 repeats
    .venv/bin/python benchmarks/step_time.py --models baseline,minivgg --isas native,avx2 --repeats 5
    .venv/bin/python benchmarks/step_time.py --compile none,default --kernels foreach   # torch.compile's step
    .venv/bin/python benchmarks/step_time.py --splits 1,2 --kernels loop   # inter-op: half the batch per thread
    .venv/bin/python benchmarks/step_time.py --models minivgg --dropouts fmnist,torch --kernels loop   # masks

Each measurement is a process of its own (oneDNN, ATen and MKL read the instruction set they may use when
torch loads: `--isas avx2` emulates an AVX2-only CPU on a newer one, as issue 18 asks; machine.ISAS), running
fmnist's training step as the trainer does (a uint8 batch gathered from the resident training set, which the
model scales itself, cross-entropy, SGD with momentum 0.9, loss and accuracy summed on the device, max-pool
before ReLU, freed memory kept): --warmup steps untimed, then the mean over --steps steps. The processes run
one after another in an order rotated each repeat (the machine's drift spreads over every variant); each
figure is the mean ± std over --repeats. Each process also records which instruction set oneDNN says it used
(one step under oneDNN's verbose mode) and the loss after its steps, so that a faster variant that computes
something else shows. bf16 autocast is measured only where the CPU has native bf16 (AVX512-BF16 or AMX),
unless --precisions says so. Markdown on stdout; every run in --results, with the machine and what ran beside
it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import ISAS, isa_environment, machine, spread, write_results  # noqa: E402  (benchmarks/machine.py)

# The rule `--precision auto` follows. Importing fmnist also sets its OpenMP default (GOMP_SPINCOUNT=1000 on Linux,
# unless set), which the child processes inherit: they wait for work as the CLI's training does.
from fmnist.device import cpu_has_native_bf16

KERNELS = ("loop", "foreach", "fused")  # SGD's update: one kernel per parameter, batched, or one fused kernel
BATCH = 32


def measure(variant: dict, warmup: int, steps: int) -> dict:
    """In this process: one variant's milliseconds per step (run by the parent as a child process)."""
    step, result = trainer_step(variant)
    step(0)
    isa = _onednn_isa(lambda: step(1))
    for i in range(2, warmup):
        step(i)
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    seconds = time.perf_counter() - started
    context = result()
    return {"ms_per_step": seconds / steps * 1000, "onednn_isa": isa,
            "mean_loss": context.pop("loss_sum") / ((warmup + steps) * BATCH), **context}


def trainer_step(variant: dict):
    """fmnist's training step for `variant` (model, precision, layout, kernel, compile; optionally split: threads
    the batch is split over, default 1, and dropout: "fmnist" (default) or "torch"), built in this process:
    (step(i) taking the i-th batch of a fixed shuffle, result() giving the summed loss, threads and torch version)."""
    import torch
    from torch.nn import functional as F

    import fmnist
    from fmnist import models, runtime

    runtime.keep_freed_memory()  # as the trainer's set-up does (runtime.py)
    torch.manual_seed(0)
    data = fmnist.load_dataset(download=False)
    images = torch.from_numpy(data.train.images).unsqueeze(1)  # uint8, resident, as the trainer keeps it
    labels = torch.from_numpy(data.train.labels).long()
    model = models.create(variant["model"])
    if variant.get("dropout", "fmnist") == "torch":  # torch's own module (bernoulli_ masks) for the A/B
        for module in list(model.modules()):
            for name, child in module.named_children():
                if isinstance(child, torch.nn.Dropout):
                    setattr(module, name, torch.nn.Dropout(child.p, child.inplace))
    if variant["layout"] == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    options = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[variant["kernel"]]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, **options)
    bf16 = variant["precision"] == "bf16"
    trainer = models.pool_before_activation(model)  # what the trainer's steps call (models/reorder.py)

    def forward_backward(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = trainer(xb)  # raw uint8 pixels: every model scales them itself
        loss = F.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.argmax(1) == yb).sum()

    if variant.get("split", 1) > 1:
        forward_backward = _split_step(model, trainer, optimizer, bf16, variant["split"])
    if variant["compile"] != "none":
        forward_backward = torch.compile(forward_backward, mode=None if variant["compile"] == "default"
                                         else variant["compile"])
    order = torch.randperm(len(images))
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)

    def step(i: int) -> None:
        nonlocal loss_sum, correct
        batch = order[(i * BATCH) % len(order):][:BATCH]
        loss, right = forward_backward(images[batch], labels[batch])
        loss_sum += loss * len(batch)
        correct += right

    def result() -> dict:
        return {"loss_sum": float(loss_sum), "threads": torch.get_num_threads(), "torch": torch.__version__}

    return step, result


def _split_step(model, trainer, optimizer, bf16: bool, shares: int):
    """The step with its batch split over `shares` threads (inter-op parallelism): each thread computes its share's
    gradients with one intra-op thread, the gradients are summed in a fixed order and SGD steps once. The same
    arithmetic as one batch (up to rounding) where no layer looks across the batch: batch norm and dropout refused."""
    import concurrent.futures

    import torch
    from torch.nn import functional as F

    if any(isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)) for module in model.modules()):
        raise SystemExit("--splits: batch norm's statistics and dropout's masks would change with the split")
    params = list(model.parameters())
    torch.set_num_threads(1)  # this thread computes a share too
    pool = concurrent.futures.ThreadPoolExecutor(shares - 1, initializer=torch.set_num_threads, initargs=(1,))

    def share(xb: torch.Tensor, yb: torch.Tensor, total: int):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # autocast is per thread
            logits = trainer(xb)
        loss = F.cross_entropy(logits.float(), yb, reduction="sum")
        return loss.detach(), (logits.argmax(1) == yb).sum(), torch.autograd.grad(loss / total, params)

    def forward_backward(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = list(zip(xb.chunk(shares), yb.chunk(shares)))
        others = [pool.submit(share, x, y, len(yb)) for x, y in parts[1:]]
        results = [share(*parts[0], len(yb))] + [other.result() for other in others]
        for i, param in enumerate(params):
            param.grad = results[0][2][i]
            for result in results[1:]:
                param.grad.add_(result[2][i])
        optimizer.step()
        return sum(result[0] for result in results) / len(yb), sum(result[1] for result in results)

    return forward_backward


def _onednn_isa(work) -> str:
    """The instruction set oneDNN reports while `work` runs under its verbose mode ('' when it reports none:
    a model whose layers torch computes without oneDNN)."""
    import torch

    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(capture.fileno(), 1)  # oneDNN writes to the C stdout
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                work()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        text = capture.read(1 << 20).decode(errors="replace")
    for line in text.splitlines():
        if ",isa:" in line:
            return line.split(",isa:", 1)[1].split(",")[0].strip()
    return ""


def run_child(variant: dict, args) -> dict:
    env = isa_environment(variant["isa"])
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    command = [sys.executable, __file__, "--child", json.dumps(variant), "--warmup", str(args.warmup),
               "--steps", str(args.steps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="baseline", help="registered models, comma-separated")
    parser.add_argument("--isas", default="native", help=f"any of {', '.join(ISAS)} (avx2: emulated, machine.ISAS)")
    parser.add_argument("--precisions", default=None, help="fp32 and/or bf16 (default: fp32, and bf16 where native)")
    parser.add_argument("--layouts", default="channels_last,contiguous")
    parser.add_argument("--kernels", default=",".join(KERNELS))
    parser.add_argument("--dropouts", default="fmnist",
                        help="fmnist's dropout module and/or torch's (bernoulli_ masks)")
    parser.add_argument("--splits", default="1", help="threads the batch is split over (inter-op), e.g. 1,2")
    parser.add_argument("--compile", default="none", help="none and/or torch.compile modes (default, max-autotune-no-cudagraphs)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every process (default: torch's)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed to one measurement")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "step_time.json")
    parser.add_argument("--beside", default="nothing", help="what else ran on the machine, recorded with the figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child), args.warmup, args.steps)))
        return
    if args.warmup < 3 or args.steps < 1:
        parser.error("--warmup: at least 3 (the first steps are untimed); --steps: at least 1")

    def listed(text: str) -> list[str]:
        return [item.strip() for item in text.split(",") if item.strip()]

    precisions = listed(args.precisions) if args.precisions else ["fp32"] + (["bf16"] if cpu_has_native_bf16() else [])
    splits = listed(args.splits)
    if not all(split.isdigit() and int(split) >= 1 for split in splits):
        parser.error("--splits: whole numbers of threads, at least 1")
    dimensions = {"model": listed(args.models), "isa": listed(args.isas), "precision": precisions,
                  "layout": listed(args.layouts), "compile": listed(args.compile), "split": [int(n) for n in splits],
                  "dropout": listed(args.dropouts), "kernel": listed(args.kernels)}
    if set(dimensions["isa"]) - set(ISAS):
        parser.error(f"--isas: any of {', '.join(ISAS)}")
    if set(dimensions["dropout"]) - {"fmnist", "torch"}:
        parser.error("--dropouts: fmnist and/or torch")
    variants = [dict(zip(dimensions, values)) for values in itertools.product(*dimensions.values())]
    runs: dict[str, list[dict]] = {json.dumps(variant): [] for variant in variants}
    started, before = time.strftime("%Y-%m-%d %H:%M:%S %Z"), machine()  # the load before this script's own work
    for repeat in range(args.repeats):
        shift = repeat % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            result = run_child(variant, args)
            runs[json.dumps(variant)].append(result)
            print(f"# repeat {repeat + 1}/{args.repeats} {variant}: {result}", file=sys.stderr, flush=True)
    results = {"command": " ".join(sys.argv), "started": started, "machine": before, "beside": args.beside,
               "settings": {"steps": args.steps, "warmup": args.warmup, "batch": BATCH, "repeats": args.repeats,
                            "threads": args.threads},
               "variants": [{**json.loads(key), "runs": value} for key, value in runs.items()]}
    write_results(args.results, results)
    report(results)


def report(results: dict) -> None:
    host = results["machine"]
    print(f"{host['cpu']}, {host['cores']} cores, flags {' '.join(host.get('flags_of_note', []))}; torch "
          f"{host.get('torch')}; beside: {results['beside']}; {results['settings']['repeats']} repeats of "
          f"{results['settings']['steps']} steps at batch {BATCH}, ms per step (mean ± std)\n")
    kernels = list(dict.fromkeys(variant["kernel"] for variant in results["variants"]))
    rows: dict[tuple, dict[str, str]] = {}
    for variant in results["variants"]:
        key = (variant["model"], variant["isa"], variant["precision"], variant["layout"], variant["compile"],
               str(variant.get("split", 1)), variant.get("dropout", "torch"))
        good = [run for run in variant["runs"] if "error" not in run]
        if good:
            isa = good[0]["onednn_isa"] or "—"
            cell = f"{spread([run['ms_per_step'] for run in good], 2)} ({isa}, loss {good[0]['mean_loss']:.4f})"
        else:
            cell = f"failed: {variant['runs'][0]['error']}"
        rows.setdefault(key, {})[variant["kernel"]] = cell
    print(f"| model | ISA cap | precision | layout | compile | threads splitting the batch | dropout | "
          f"{' | '.join(kernels)} |")
    print("|" + "---|" * (7 + len(kernels)))
    for key, cells in rows.items():
        print(f"| {' | '.join(key)} | {' | '.join(cells.get(kernel, '') for kernel in kernels)} |")


if __name__ == "__main__":
    main()
