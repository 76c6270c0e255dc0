"""`fmnist tune` on write-up 002's space: what a search finds, what the sampler and pruner are worth,
and what a second worker and the PostgreSQL storage cost.

    .venv/bin/python benchmarks/tune.py                      # the issue's settings (hours on 2 CPU cores)
    .venv/bin/python benchmarks/tune.py --trials 6 --limit 3000 --epochs 2 --seeds 1 --full-epochs 2

1. Search: configs/tune-writeup002.yaml, --trials N at --limit L --epochs E, TPE + Hyperband against
   random sampling without pruning, for each seed: best validation accuracy (--val, default 500 training
   images per class held out), trials pruned, wall seconds.
2. The best config found (over the TPE studies), trained on the whole training set for --full-epochs
   (default 5, write-up 002's) and evaluated on the test set, against write-up 002's default config and `--recipe fast` trained
   the same way.
3. Workers: the TPE study again with 1 and with 2 workers on one PostgreSQL study (a throw-away server
   started as tests/postgres.py does, or --postgres URL): wall seconds, and the time outside trials
   per trial = (study wall time x workers - the trials' own time) / trials: the storage (the count
   under the budget lock, ask, tell), but also the study's set-up and its figures at the end.

4. Storage: the storage's own cost per trial, without training: --storage-trials empty trials (six
   suggestions, three intermediate reports, as a 3-epoch trial of 002's space makes) through the same
   steps a worker takes (the budget lock, counting the study's trials, ask, report, tell, heartbeats),
   on SQLite and on PostgreSQL, --storage-repeats times each, one process.

Markdown on stdout; every number in benchmarks/results/tune.json (--results), rewritten after each search
and each full run. A run continues the file it is given: a search or full run already in it is not run
again, so the hours of the issue's settings can be spread over several sittings (--parts, --seeds, --samplers), and
each figure records the machine, its load and what ran beside it (--beside).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine, spread  # noqa: E402  (benchmarks/machine.py, beside this script)

SPACE = HERE.parent / "configs" / "tune-writeup002.yaml"


def search(out: Path, args, seed: int, sampler: str, pruner: str, dataset, storage=None, workers=1) -> dict:
    import fmnist
    from fmnist.tuning.space import load_space

    base = dataclasses.replace(load_space(SPACE).base_config(), limit=args.limit, epochs=args.epochs, seed=seed,
                               device="cpu", val=args.val)
    started = time.perf_counter()
    summary = fmnist.tune(SPACE, out, trials=args.trials, config=base, sampler=sampler, pruner=pruner,
                          storage=storage, workers=workers, study=f"bench-{sampler}-{seed}-{workers}-{time.time_ns()}",
                          dataset=dataset if workers == 1 else None)
    wall = time.perf_counter() - started
    trial_seconds = sum(trial["seconds"] or 0.0 for trial in summary["trials"])
    return {"seed": seed, "sampler": sampler, "pruner": pruner, "workers": workers, "wall_seconds": wall,
            "best": summary["best"]["value"] if summary["best"] else None,
            "best_config": summary["best"]["config"] if summary["best"] else None,
            "pruned": summary["counts"].get("pruned", 0), "failed": summary["counts"].get("fail", 0),
            "trial_seconds": trial_seconds,
            "overhead_per_trial": max(0.0, wall * workers - trial_seconds) / max(1, len(summary["trials"]))}


def train_full(config_values: dict, args, dataset) -> dict:
    from fmnist.engine.config import build_config, config_from_dict
    from fmnist.engine.trainer import fit

    if "recipe_only" in config_values:  # build_config keeps the recipe's warm-up share at another length
        config = build_config(recipe=config_values["recipe_only"], device="cpu", val="test", checkpoint="none",
                              epochs=args.full_epochs)
    else:
        config = config_from_dict({**config_values, "device": "cpu", "val": "test", "checkpoint": "none",
                                   "limit": args.full_limit})
    config = dataclasses.replace(config, epochs=args.full_epochs, limit=args.full_limit)
    with tempfile.TemporaryDirectory() as out:
        result = fit(config, Path(out) / "run", dataset=dataset)
    return {"test_accuracy": result.history[-1]["val_accuracy"], "epochs": config.epochs,
            "train_seconds": sum(row["seconds"] for row in result.history)}


def storage_cost(url: str, trials: int) -> float:
    """Seconds per empty trial through a worker's storage steps (see the module's docstring, part 4)."""
    import optuna

    from fmnist.tuning.storage import budget_lock, open_storage
    from fmnist.workflows.tune_results import budget_state

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url)
    name = f"storage-{time.time_ns()}"
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial) -> float:
        values = [trial.suggest_float("lr", 1e-5, 1e-1, log=True), trial.suggest_int("blocks", 1, 3),
                  trial.suggest_categorical("batch_size", [32, 50, 64, 128]), trial.suggest_float("dropout", 0, 0.5),
                  trial.suggest_int("channels", 16, 128, step=16), trial.suggest_categorical("dense", [128, 256, 512])]
        for epoch in range(3):
            trial.report(float(epoch), epoch)
        return float(len(values))

    study.optimize(objective, n_trials=1)  # untimed: the first trial's lazy imports are no storage cost
    started = time.perf_counter()
    for _ in range(trials):
        with budget_lock(storage, name):
            budget_state(study)
            study.optimize(objective, n_trials=1)
    seconds = (time.perf_counter() - started) / trials
    storage.remove_session()
    storage.engine.dispose()
    return seconds


def _mean_std(values: list[float]) -> str:
    values = [value for value in values if value is not None]
    if not values:
        return "—"
    spread = f" ± {statistics.stdev(values) * 100:.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values) * 100:.2f}{spread}"


def settings(args) -> dict:
    """What makes two runs' numbers comparable: a results file with other settings is not continued."""
    return {"trials": args.trials, "limit": args.limit, "epochs": args.epochs, "val": args.val,
            "full_epochs": args.full_epochs, "full_limit": args.full_limit, "workers_trials": args.workers_trials}


def load_results(path: Path, args) -> dict:
    fresh = {"settings": settings(args), "commands": [], "searches": [], "full": {}, "workers": []}
    if not path.exists():
        return fresh
    results = json.loads(path.read_text())
    if results.get("settings") != settings(args):
        sys.exit(f"{path}: holds a run with other settings ({results.get('settings')}); "
                 "give another --results file or remove it")
    return results


def save_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=2, default=str) + "\n")
    partial.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--limit", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", default="tpe,random",
                        help="which searches of each seed to run: tpe (+ Hyperband), random (no pruning) or both")
    parser.add_argument("--val", default="balanced:500", help="the trials' hold-out (per class with balanced:)")
    parser.add_argument("--full-epochs", type=int, default=5, help="epochs of every full run (002 trains 5)")
    parser.add_argument("--full-limit", type=int, default=None, help="training images of the full runs (default: all)")
    parser.add_argument("--workers-trials", type=int, default=None, help="trials of the workers part (default: --trials)")
    parser.add_argument("--postgres", help="a PostgreSQL URL for the workers part (default: start a throw-away server)")
    parser.add_argument("--storage-trials", type=int, default=100, help="empty trials per repeat of the storage part")
    parser.add_argument("--storage-repeats", type=int, default=3, help="repeats of the storage part, per storage")
    parser.add_argument("--parts", default="search,full,workers,storage",
                        help="which parts to run, comma-separated (default: all four)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "tune.json",
                        help="the results file; a run continues it (a search already in it is not run again), "
                             "and it is rewritten after every search and every full run")
    parser.add_argument("--beside", default="nothing",
                        help="what else ran on the machine, recorded with every figure (default: nothing)")
    args = parser.parse_args()
    args.workers_trials = args.workers_trials or args.trials
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if not parts <= {"search", "full", "workers", "storage"}:
        parser.error(f"--parts: unknown part(s) {sorted(parts - {'search', 'full', 'workers', 'storage'})}")
    samplers = [sampler.strip() for sampler in args.samplers.split(",") if sampler.strip()]
    if not samplers or not set(samplers) <= {"tpe", "random"}:
        parser.error(f"--samplers: expected tpe, random or both, got {args.samplers!r}")

    from fmnist.data.dataset import load_dataset

    dataset = load_dataset(download=False)
    results = load_results(args.results, args)
    results["commands"].append({"command": " ".join(sys.argv), "machine": machine(), "beside": args.beside,
                                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})

    def record(kind: str, run: dict) -> None:
        run.update(machine=machine(), beside=args.beside)
        print(f"# {kind}: {run}", file=sys.stderr)
        save_results(args.results, results)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if "search" in parts:
            for seed in range(1, args.seeds + 1):
                for sampler, pruner in (("tpe", "hyperband"), ("random", "none")):
                    if sampler not in samplers or any(run["seed"] == seed and run["sampler"] == sampler for run in results["searches"]):
                        continue
                    load = os.getloadavg()[0]
                    run = {**search(scratch / f"{sampler}-{seed}", args, seed, sampler, pruner, dataset),
                           "load_at_start": load}
                    results["searches"].append(run)
                    record("search", run)
        if "full" in parts:
            tpe = [run for run in results["searches"] if run["sampler"] == "tpe" and run["best"] is not None]
            if not tpe:
                sys.exit(f"{args.results}: no TPE search to take the best config from; run --parts search first")
            best = max(tpe, key=lambda run: run["best"])["best_config"]
            from fmnist.engine.config import load_config_file

            default = load_config_file(HERE.parent / "configs" / "writeup002-fmnistcnn.yaml")
            for name, values in (("best found", best), ("002 default", default),
                                 ("--recipe fast", {"recipe_only": "fast"})):
                if name in results["full"] and (name != "best found" or results["full"][name].get("config") == best):
                    continue
                results["full"][name] = {**train_full(values, args, dataset),
                                         **({"config": best} if name == "best found" else {})}
                record(f"full {name}", results["full"][name])
        if parts & {"workers", "storage"}:
            server = None
            url = args.postgres
            if url is None:
                sys.path.insert(0, str(HERE.parent / "tests"))
                from postgres import start_server  # the tests' throw-away server

                server = start_server()
                url = server.url
            try:
                trials_args = argparse.Namespace(**{**vars(args), "trials": args.workers_trials})
                for workers in (1, 2) if "workers" in parts else ():
                    if any(run["workers"] == workers for run in results["workers"]):
                        continue
                    run = search(scratch / f"w{workers}", trials_args, 1, "tpe", "hyperband", dataset,
                                 storage=url, workers=workers)
                    results["workers"].append(run)
                    record("workers", run)
                if "storage" in parts and not results.get("storage"):
                    costs = {"sqlite": [], "postgresql": []}
                    for repeat in range(args.storage_repeats):  # interleaved: the machine's drift hits both
                        costs["sqlite"].append(storage_cost(f"sqlite:///{scratch / f'storage-{repeat}.db'}",
                                                            args.storage_trials))
                        costs["postgresql"].append(storage_cost(url, args.storage_trials))
                    results["storage"] = {"trials": args.storage_trials, "seconds_per_trial": costs,
                                          "load_at_start": os.getloadavg()[0]}
                    record("storage", results["storage"])
            finally:
                if server is not None:
                    server.stop()
    report(results, args)


def report(results: dict, args) -> None:
    seeds = sorted({run["seed"] for run in results["searches"]})
    host = results["commands"][-1]["machine"]
    flags = host.get("flags") or " ".join(host.get("flags_of_note", []))  # older records: "flags"
    print(f"{args.trials} trials per study, --limit {args.limit} --epochs {args.epochs}, seeds {seeds}; "
          f"{host['cpu']} ({flags})\n")
    print("| search | best val accuracy % (mean ± std) | pruned trials (mean) | wall s (mean) |")
    print("|---|---|---|---|")
    for sampler, pruner in (("tpe", "hyperband"), ("random", "none")):
        runs = [run for run in results["searches"] if run["sampler"] == sampler]
        if not runs:
            continue
        print(f"| {sampler} + {pruner} | {_mean_std([run['best'] for run in runs])} | "
              f"{statistics.mean(run['pruned'] for run in runs):.1f} | "
              f"{statistics.mean(run['wall_seconds'] for run in runs):.0f} |")
    print("\n| trained on the full training set | epochs | test accuracy % | train s |")
    print("|---|---|---|---|")
    for name, run in results["full"].items():
        print(f"| {name} | {run['epochs']} | {run['test_accuracy'] * 100:.2f} | {run['train_seconds']:.0f} |")
    if results["workers"]:
        print("\n| PostgreSQL workers | wall s | best val accuracy % | time outside trials per trial, s |")
        print("|---|---|---|---|")
        for run in results["workers"]:
            best = "—" if run["best"] is None else f"{run['best'] * 100:.2f}"
            print(f"| {run['workers']} | {run['wall_seconds']:.0f} | {best} | "
                  f"{run['overhead_per_trial']:.2f} |")
    if results.get("storage"):
        print(f"\n| storage, {results['storage']['trials']} empty trials | ms per trial (mean ± std over repeats) |")
        print("|---|---|")
        for kind, seconds in results["storage"]["seconds_per_trial"].items():
            print(f"| {kind} | {spread([value * 1000 for value in seconds])} |")


if __name__ == "__main__":
    main()
