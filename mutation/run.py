"""`make mutation`: mutmut over the modules whose mistakes cost users most, each against a fast test subset.

    python mutation/run.py                 # every group, from scratch; summary in .mutation/summary.md
    python mutation/run.py formats images  # some groups
    python mutation/run.py --survivors trainer  # after adding tests: re-check only the last run's survivors
                                                # (or finish an interrupted run)

Each group gets a work folder `.mutation/<group>/` (git-ignored) holding a copy of src/, tests/, configs/
and pyproject.toml, a setup.cfg for mutmut, and mutmut's own state (mutants/, its copy of the package
with every mutant in it). The tests and the `fmnist` subprocesses they start import that copy
(PYTHONPATH), so a mutant is live in both; mutation/hooks/ makes mutmut credit a function to the tests
that reach it through a subprocess or a shared fixture. mutmut runs, per mutant, only the tests of the
group's subset that call the mutated function, and stops at the first failure.

A mutant is detected when a test fails (killed) or runs past mutmut's per-mutant limit (timeout: 15
times the tests' recorded time plus TIMEOUT_CONSTANT seconds). The score is detected / all mutants of
the module (or, for trainer.py, of the parts listed in `only`). Survivors are listed with their diffs in
`.mutation/<group>/survivors.txt`; mutation/SURVIVORS.md says why each remaining one is left alive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
HOOKS = ROOT / "mutation" / "hooks"
COPIED = ("src", "tests", "configs", "pyproject.toml")
TIMEOUT_CONSTANT = 20  # seconds added to a test's recorded time before mutmut's 15x: fixtures and load vary

# group → the modules it mutates, the mutants it checks (mutmut names; None: all of them), its tests.
# The subsets leave out tests that take tens of seconds when faster ones reach the same code.
TRAIN_SUBSET = [
    "tests/test_train.py",
    "tests/test_resume.py",
    "--deselect", "tests/test_train.py::test_same_seed_same_run_other_seed_other_run",
    "--deselect", "tests/test_train.py::test_saved_model_gives_the_in_memory_accuracy",
    "--deselect", "tests/test_train.py::test_interrupted_and_resumed_run_equals_uninterrupted[minivgg-sgd-time-decay-extra1]",
    "--deselect", "tests/test_train.py::test_interrupted_and_resumed_run_equals_uninterrupted[fast-sgd-linear-extra2]",
]
GROUPS: dict[str, dict] = {
    "formats": {
        # kaggle_csv.py: the CSV reader and writer, formats.py's until issue 13 moved them out
        "mutate": ["src/fmnist/data/formats.py", "src/fmnist/data/kaggle_csv.py"],
        # and the hostile data-file tests that run in-process (those that start `fmnist` take 10-20 s each)
        "tests": ["tests/test_formats.py", "tests/test_dataset.py",
                  *(f"tests/hostile/test_data_files.py::{name}" for name in (
                      "test_an_empty_shape_with_huge_dimensions_is_refused_too",
                      "test_the_limit_is_the_declared_size_itself",
                      "test_csv_rows_keep_their_line_numbers_across_blank_lines_and_blocks",
                      "test_csv_rows_of_the_wrong_width_everywhere_are_one_line",
                      "test_a_valid_gzip_idx_reads_the_same_as_raw"))],
    },
    "images": {
        "mutate": ["src/fmnist/images.py", "src/fmnist/image_spec.py"],
        "tests": ["tests/test_images.py", "tests/test_formats.py", "tests/test_dataset.py",
                  # all 70,000 images (19 s); the limits it guards have their own tests
                  "--deselect", "tests/test_images.py::test_every_dataset_image_passes_through_unchanged"],
    },
    "modelfile": {
        # model_metadata.py: the metadata checks, modelfile.py's until issue 13 moved them out
        "mutate": ["src/fmnist/modelfile.py", "src/fmnist/model_metadata.py"],
        "tests": ["tests/test_modelfile.py", "tests/test_predict.py::test_cli_bad_model_files_exit_2",
                  # the hostile model-file tests that load files in-process; the rest start `fmnist` (10-30 s
                  # each), load NaN models through every command or fuzz ONNX files
                  *(f"tests/hostile/test_model_files.py::{name}" for name in (
                      "test_an_image_size_the_model_does_not_take",
                      "test_every_metadata_field_is_bounded", "test_more_class_names_than_outputs",
                      "test_metadata_edited_without_rehashing_is_refused",
                      "test_files_written_before_the_content_digest_still_load",
                      "test_every_new_file_records_the_content_digest",
                      "test_a_header_larger_than_the_bound_is_refused_unread", "test_the_api_says_so_too"))],
    },
    "export": {
        "mutate": ["src/fmnist/export.py"],
        "tests": ["tests/test_export.py",
                  "tests/test_promises_cli.py::test_onnx_export_refuses_a_graph_that_differs_and_writes_nothing"],
    },
    "runfolder": {
        "mutate": ["src/fmnist/runfolder.py"],
        "tests": ["tests/test_runfolder.py", *TRAIN_SUBSET,
                  "--deselect", "tests/test_train.py::test_early_stop_restores_the_best_weights"],
    },
    "trainer": {
        "mutate": ["src/fmnist/engine/resume.py", "src/fmnist/engine/trainer.py"],
        "only": ["fmnist.engine.resume.*", "fmnist.engine.trainer.xǁBestǁ*", "fmnist.engine.trainer.xǁCheckpointerǁ*"],
        "tests": TRAIN_SUBSET,
    },
}
DETECTED = {"killed", "timeout", "segfault"}


def setup_cfg(group: dict) -> str:
    def listed(key: str, values: list[str]) -> str:
        return f"{key} =\n" + "".join(f"    {value}\n" for value in values)

    tests = [arg for arg in group["tests"] if arg.startswith("-") or (ROOT / arg.split("::")[0]).exists()]
    return ("[mutmut]\nsource_paths = src\n" + listed("only_mutate", group["mutate"])
            + listed("pytest_add_cli_args_test_selection", tests)
            + listed("also_copy", ["configs"])  # beside mutmut's copy of tests/: test_train.py reads ../configs
            + listed("pytest_add_cli_args", ["-p", "mutmut_hits", "-p", "no:cacheprovider"])
            + f"timeout_constant = {TIMEOUT_CONSTANT}\n")


def prepare(name: str, keep: bool) -> Path:
    """The group's work folder: fresh, or (`keep`) mutmut's state kept and the tests copied anew. Only
    tests may change between kept runs: mutmut would not see a changed module it did not mutate."""
    work = WORK / name
    if not keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for item in COPIED:
        source, target = ROOT / item, work / item
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            if item != "src":  # mutmut keeps its own copy of src/ in mutants/; tests may change between runs
                shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    (work / "setup.cfg").write_text(setup_cfg(GROUPS[name]), encoding="utf-8")
    # Exists before Python starts: a PYTHONPATH folder missing at start-up stays unimportable.
    (work / "mutants" / "src").mkdir(parents=True, exist_ok=True)
    (work / "hits").mkdir(exist_ok=True)
    return work


def run_group(name: str, survivors: bool, children: int) -> dict:
    group, work = GROUPS[name], prepare(name, keep=survivors)
    names = group.get("only", [])
    if survivors:
        result = work / "result.json"
        # No result.json: the last run was interrupted; its mutants not yet checked are taken up too.
        last = (json.loads(result.read_text(encoding="utf-8")) if result.is_file()
                else {"group": name, "date": date.today().isoformat(), "seconds": 0.0, "modules": collect(work, group)})
        names = [mutant for statuses in last["modules"].values() for mutant, status in statuses.items()
                 if status not in DETECTED]
        if not names:
            return last
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(work / "mutants" / "src"), str(HOOKS)]),
               FMNIST_MUTATION_WORK=str(work), FMNIST_MUTATION_HITS=str(work / "hits"), MPLBACKEND="Agg",
               # One thread per mutant: mutmut forks its workers from a process that has run torch, and
               # OpenMP's thread pool does not survive a fork (the children hang); two workers fill 2 cores.
               OMP_NUM_THREADS="1")
    env.pop("FMNIST_DATA", None)
    started = time.monotonic()
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        code = subprocess.call([sys.executable, "-m", "mutmut", "run", "--max-children", str(children),
                                *names], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    if code != 0:
        sys.exit(f"mutation: mutmut failed for group {name} (exit {code}); see {work / 'mutmut.log'}")
    results = collect(work, group)
    write_survivors(work, results)
    run = {"group": name, "date": date.today().isoformat(), "seconds": seconds, "modules": results}
    (work / "result.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    return run


def collect(work: Path, group: dict) -> dict[str, dict[str, str]]:
    """module path → {mutant name: status}, for the mutants the group checks."""
    from mutmut.stats import (
        status_by_exit_code,  # mutmut is installed by `make mutation`
    )

    results = {}
    for module in group["mutate"]:
        meta = json.loads((work / "mutants" / f"{module}.meta").read_text(encoding="utf-8"))
        results[module] = {
            mutant: status_by_exit_code[code] for mutant, code in sorted(meta["exit_code_by_key"].items())
            if not group.get("only") or any(fnmatch(mutant, pattern) for pattern in group["only"])}
    return results


def write_survivors(work: Path, results: dict[str, dict[str, str]]) -> None:
    """survivors.txt: each mutant left alive, its line in the module and its diff."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = os.getcwd()
    os.chdir(work)  # mutmut reads its setup.cfg and mutants/ from the working directory
    reset_config()
    try:
        with open("survivors.txt", "w", encoding="utf-8") as out:
            for module, statuses in results.items():
                source = Path(module).read_text(encoding="utf-8").splitlines()
                for mutant, status in statuses.items():
                    if status not in DETECTED:
                        diff = get_diff_for_mutant(mutant, path=module)
                        out.write(f"# {module}:{_line(source, mutant, diff)} {mutant}: {status}\n{diff}\n\n")
    finally:
        os.chdir(here)


def _line(source: list[str], mutant: str, diff: str) -> int | str:
    """The line number in `source` of the first line the mutant changes."""
    function = mutant.rpartition(".")[2].split("__mutmut_")[0].split("ǁ")[-1].removeprefix("x_")
    changed = next((line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")),
                   None)
    start = next((i for i, line in enumerate(source) if line.lstrip().startswith(f"def {function}(")), 0)
    for number in range(start, len(source)):
        if source[number].strip() == changed:
            return number + 1
    return "?"


def summary(runs: list[dict]) -> str:
    lines = ["| module | detected / mutants | score | killed | timeout | survived | no tests | minutes (group, date) |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for module, statuses in run["modules"].items():
            counts = {status: list(statuses.values()).count(status) for status in set(statuses.values())}
            detected = sum(counts.get(status, 0) for status in DETECTED)
            total = len(statuses)
            lines.append(f"| {module} | {detected} / {total} | {100 * detected / max(total, 1):.1f} % | "
                         f"{counts.get('killed', 0)} | {counts.get('timeout', 0)} | {counts.get('survived', 0)} | "
                         f"{counts.get('no tests', 0)} | {run['seconds'] / 60:.0f} ({run['group']}, {run['date']}) |")
    total_minutes = sum(run["seconds"] for run in runs) / 60
    lines += ["", f"total: {total_minutes:.0f} minutes"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"default: all of {', '.join(GROUPS)}")
    parser.add_argument("--survivors", action="store_true",
                        help="continue in the existing work folders, re-checking only the last run's survivors")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once (default 2)")
    args = parser.parse_args()
    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; the groups are {', '.join(GROUPS)}")
    runs = []
    for name in args.groups or list(GROUPS):
        print(f"mutation: {name} ...", flush=True)
        runs.append(run_group(name, args.survivors, args.children))
        print("\n".join(line for line in summary(runs[-1:]).splitlines() if line.startswith("| src/")), flush=True)
    print(f"this run: {sum(run['seconds'] for run in runs) / 60:.0f} minutes")
    # The summary covers every group's latest run, so a rerun of some groups keeps the others' results.
    latest = [json.loads((WORK / name / "result.json").read_text(encoding="utf-8"))
              for name in GROUPS if (WORK / name / "result.json").is_file()]
    text = summary(latest)
    (WORK / "summary.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
