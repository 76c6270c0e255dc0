"""fmnist against what users run instead: the write-ups' own Keras/TensorFlow recipes, same machine.

    .venv/bin/pip install -e '.[bench]'            # tensorflow-cpu + keras (make bench does both)
    .venv/bin/python benchmarks/vs_keras.py --recipe baseline --epochs 10 --seeds 3 --target 0.90
    .venv/bin/python benchmarks/vs_keras.py --recipe minivgg --epochs 3 --seeds 3
    .venv/bin/python benchmarks/vs_keras.py --recipe baseline --epochs 3 --seeds 3 --isa avx2   # an AVX2-only CPU

For each recipe and seed the Keras script and the same recipe in fmnist run one after the other,
each in a fresh process, the order alternating between seeds so that a drift in the machine's
speed hits both. Each framework trains one epoch at a time and is evaluated on the 10,000 test
images after it; only the training is timed. Reported per framework, mean ± std over seeds:

- seconds per epoch, epoch 1 excluded (TensorFlow traces and compiles its graph there; PyTorch warms
  its allocator);
- time to the target test accuracy: training seconds, epoch 1 included, until the first epoch whose
  test accuracy reaches --target (only when every seed of both frameworks reaches it);
- the final test accuracy.

`--isa avx2` runs both frameworks as on an AVX2-only CPU (machine.ISAS: oneDNN, which TensorFlow uses too,
ATen and MKL held to AVX2 + FMA); fmnist's `--precision auto` then trains in fp32, as it would there.

Keras reads Fashion-MNIST from its own cache (`KERAS_HOME/datasets/fashion-mnist`); the script fills
a private KERAS_HOME from fmnist's verified copy first, so nothing is downloaded. Results go to stdout
as Markdown and to benchmarks/results/vs_keras-RECIPE[-ISA-emulated].json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import ISAS, describe, isa_environment, machine  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
RECIPES = ("baseline", "minivgg")
KERAS_FILES = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz")


# --------------------------------------------------------------------------- workers (one process each)


def writeup000_model():
    """Write-up 000's define_model(): its CNN, uncompiled."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu", kernel_initializer="he_uniform"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(100, activation="relu", kernel_initializer="he_uniform"),
        layers.Dense(10, activation="softmax"),
    ])


def keras_worker(recipe: str, epochs: int, seed: int) -> None:
    """Write-up 000's baseline or 001's MiniVGGNet, as the write-ups build and compile them."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    (train_x, train_y), (test_x, test_y) = keras.datasets.fashion_mnist.load_data()
    train_x = train_x.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    test_x = test_x.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    train_y, test_y = keras.utils.to_categorical(train_y, 10), keras.utils.to_categorical(test_y, 10)
    if recipe == "baseline":
        model = writeup000_model()
        optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    else:  # write-up 001, MiniVGGNet.build(); SGD(lr=1e-2, momentum=0.9, decay=1e-2 / 25)
        model = keras.Sequential([keras.Input((28, 28, 1))])
        for filters in (32, 64):
            for _ in range(2):
                model.add(layers.Conv2D(filters, (3, 3), padding="same"))
                model.add(layers.Activation("relu"))
                model.add(layers.BatchNormalization(axis=-1))
            model.add(layers.MaxPooling2D(pool_size=(2, 2)))
            model.add(layers.Dropout(0.25))
        model.add(layers.Flatten())
        model.add(layers.Dense(512))
        model.add(layers.Activation("relu"))
        model.add(layers.BatchNormalization())
        model.add(layers.Dropout(0.5))
        model.add(layers.Dense(10))
        model.add(layers.Activation("softmax"))
        # Keras 3 has no legacy `decay`: InverseTimeDecay(decay_steps=1) is lr / (1 + decay * step).
        schedule = keras.optimizers.schedules.InverseTimeDecay(0.01, decay_steps=1, decay_rate=0.01 / 25)
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(epochs):
        started = time.perf_counter()
        model.fit(train_x, train_y, batch_size=32, epochs=epoch + 1, initial_epoch=epoch, verbose=0, shuffle=True)
        seconds = time.perf_counter() - started
        _, accuracy = model.evaluate(test_x, test_y, batch_size=1000, verbose=0)
        _emit(epoch + 1, seconds, float(accuracy))


def fmnist_worker(recipe: str, epochs: int, seed: int) -> None:
    """The same recipe in fmnist: the shipped config, CPU, test set as validation, no checkpoints."""
    from fmnist.engine.config import build_config
    from fmnist.engine.trainer import fit

    config_file = {"baseline": "writeup000-baseline.yaml", "minivgg": "writeup001-minivgg.yaml"}[recipe]
    # The configs spell the decay out (0.01 / 25 for minivgg), so running fewer epochs keeps the recipe.
    config = build_config(HERE.parent / "configs" / config_file, epochs=epochs, seed=seed, device="cpu",
                          checkpoint="none", val="test")
    with tempfile.TemporaryDirectory() as out:
        fit(config, Path(out) / "run", callbacks=[lambda row: _emit(row["epoch"], row["seconds"], row["val_accuracy"])])


def _emit(epoch: int, seconds: float, accuracy: float) -> None:
    print(json.dumps({"epoch": epoch, "seconds": seconds, "test_accuracy": accuracy}), flush=True)


# --------------------------------------------------------------------------- the comparison


def fill_keras_cache(keras_home: Path) -> None:
    """Keras's fashion_mnist.load_data() reads these gzip files and downloads only when one is missing."""
    from fmnist.data import formats
    from fmnist.data.dataset import load_dataset

    dataset = load_dataset(download=False)
    if not dataset.verified:
        sys.exit("fmnist did not find the official Fashion-MNIST files; run `fmnist data` first")
    target = keras_home / "datasets" / "fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    roles = {"train-labels": "train_labels", "train-images": "train_images", "t10k-labels": "test_labels",
             "t10k-images": "test_images"}
    for name in KERAS_FILES:
        role = roles[name[: name.index("-", name.index("-") + 1)]]
        path = target / name
        if not path.is_file():
            path.write_bytes(gzip.compress(formats.read_file_bytes(dataset.source.files[role]), mtime=0))


def run_worker(framework: str, recipe: str, epochs: int, seed: int, keras_home: Path, quiet: bool,
               isa: str = "native") -> list[dict]:
    env = isa_environment(isa, dict(os.environ, KERAS_HOME=str(keras_home), TF_CPP_MIN_LOG_LEVEL="2",
                                    PYTHONUNBUFFERED="1"))
    if framework == "keras":  # TensorFlow as users run it: without what importing fmnist set in this process
        from fmnist import runtime  # this parent has imported fmnist already (fill_keras_cache); the worker never does

        for name in runtime.SET_BY_FMNIST:
            env.pop(name, None)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--recipe", recipe,
               "--epochs", str(epochs), "--seed", str(seed)]
    rows = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        for line in process.stdout:
            if line.startswith("{"):
                rows.append(json.loads(line))
                if not quiet:
                    row = rows[-1]
                    print(f"  {recipe} seed {seed} {framework:6s} epoch {row['epoch']:2d}: {row['seconds']:6.1f} s, "
                          f"test accuracy {row['test_accuracy']:.4f}", file=sys.stderr, flush=True)
        errors = process.stderr.read()
    if process.returncode != 0 or len(rows) != epochs:
        sys.exit(f"{framework} worker failed (exit {process.returncode}):\n{errors[-3000:]}")
    return rows


def summarise(runs: list[list[dict]], target: float | None) -> dict:
    per_epoch = [statistics.mean(row["seconds"] for row in rows[1:]) for rows in runs if len(rows) > 1]
    reached = []
    for rows in runs:
        elapsed, hit = 0.0, None
        for row in rows:
            elapsed += row["seconds"]
            if target is not None and row["test_accuracy"] >= target:
                hit = elapsed
                break
        reached.append(hit)
    finals = [rows[-1]["test_accuracy"] for rows in runs]
    return {
        "seconds_per_epoch": _stats(per_epoch),
        "time_to_target": _stats(reached) if target is not None and all(r is not None for r in reached) else None,
        "seeds_reaching_target": sum(r is not None for r in reached),
        "final_test_accuracy": _stats(finals),
        "runs": runs,
    }


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=RECIPES, default="baseline")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 10 baseline, 3 minivgg)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per framework")
    parser.add_argument("--target", type=float, default=None, help="test accuracy for time-to-target, e.g. 0.90")
    parser.add_argument("--isa", choices=sorted(ISAS), default="native",
                        help="the instruction set both frameworks may use (avx2: an AVX2-only CPU, emulated)")
    parser.add_argument("--quiet", action="store_true", help="no line per epoch")
    parser.add_argument("--results", type=Path, default=None, help="default: benchmarks/results/vs_keras-RECIPE.json")
    parser.add_argument("--worker", choices=("keras", "fmnist"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    epochs = args.epochs or (10 if args.recipe == "baseline" else 3)
    if args.worker == "keras":
        return keras_worker(args.recipe, epochs, args.seed)
    if args.worker == "fmnist":
        return fmnist_worker(args.recipe, epochs, args.seed)
    if epochs < 2:
        sys.exit("--epochs must be at least 2 (epoch 1 is warm-up)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, before it is imported
    import keras  # noqa: F401  (fail early when the bench extra is missing)
    import tensorflow as tf
    import torch

    runs: dict[str, list[list[dict]]] = {"keras": [], "fmnist": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as keras_home:
        fill_keras_cache(Path(keras_home))
        for seed in range(1, args.seeds + 1):
            order = ("keras", "fmnist") if seed % 2 else ("fmnist", "keras")
            for framework in order:
                runs[framework].append(run_worker(framework, args.recipe, epochs, seed, Path(keras_home), args.quiet,
                                                  args.isa))
    summary = {framework: summarise(framework_runs, args.target) for framework, framework_runs in runs.items()}
    results = {
        "recipe": args.recipe, "epochs": epochs, "seeds": args.seeds, "target": args.target, "isa": args.isa,
        "isa_environment": ISAS[args.isa],
        "machine": machine(),
        "versions": {"torch": torch.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_seconds": time.perf_counter() - started,
        **summary,
    }
    emulated = "" if args.isa == "native" else f"-{args.isa}-emulated"
    out = args.results or HERE / "results" / f"vs_keras-{args.recipe}{emulated}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    print(f"wrote {out}")


def _table(results: dict) -> str:
    keras_, ours = results["keras"], results["fmnist"]

    def cell(stats: dict | None, unit: str, scale: float = 1.0, digits: int = 1) -> str:
        if stats is None:
            return "—"
        return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}{unit}"

    def ratio(key: str) -> str:
        if keras_[key] is None or ours[key] is None:
            return "—"
        return f"{ours[key]['mean'] / keras_[key]['mean']:.2f}×"

    lines = [f"{results['recipe']}, {results['epochs']} epochs, batch 32, mean ± std over {results['seeds']} seeds "
             f"(torch {results['versions']['torch']}, TensorFlow {results['versions']['tensorflow']}, "
             f"Keras {results['versions']['keras']}; {describe(results['machine'])}"
             + (f"; emulated {results['isa']}: {results['isa_environment']})" if results.get("isa", "native") != "native"
                else ")"),
             "", "| | Keras/TensorFlow | fmnist | fmnist / Keras |", "|---|---|---|---|",
             f"| seconds per epoch (epoch 1 excluded) | {cell(keras_['seconds_per_epoch'], ' s')} | "
             f"{cell(ours['seconds_per_epoch'], ' s')} | {ratio('seconds_per_epoch')} |"]
    if results["target"] is not None:
        lines.append(f"| training seconds to {results['target']:.1%} test accuracy | "
                     f"{cell(keras_['time_to_target'], ' s')} ({keras_['seeds_reaching_target']}/{results['seeds']}) | "
                     f"{cell(ours['time_to_target'], ' s')} ({ours['seeds_reaching_target']}/{results['seeds']}) | "
                     f"{ratio('time_to_target')} |")
    lines.append(f"| test accuracy after epoch {results['epochs']} | {cell(keras_['final_test_accuracy'], ' %', 100, 2)} | "
                 f"{cell(ours['final_test_accuracy'], ' %', 100, 2)} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
