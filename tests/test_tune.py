"""`fmnist tune`: the search-space file, a study on SQLite that best.yaml reproduces, pruning, and a
real PostgreSQL server shared by two workers — one of them killed with SIGKILL in mid-trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import optuna
import pytest
import yaml
from postgres import missing_reason, start_server
from test_cli import FMNIST, assert_one_line_error, run

import fmnist
from fmnist.engine.config import TrainConfig
from fmnist.tuning.space import SpaceError, load_space

SPACE = {"lr": {"log": [0.003, 0.05]}, "batch_size": [32, 64]}
TINY = ("--limit", "2000", "--epochs", "1", "--val", "balanced:20", "--device", "cpu")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of the session's own. In CI it must start; elsewhere a machine without
    PostgreSQL skips these tests, saying why."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}: `make test` installs it")
        pytest.skip(reason)
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh database per test, so studies never meet."""
    return postgres_server.create_database("t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:50])


def write_space(path, space=SPACE):
    path.write_text(yaml.safe_dump(space), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- the search-space file


def test_the_shipped_spaces_are_valid():
    space = load_space("configs/tune-writeup002.yaml")
    base = space.base_config()
    space.check(base)
    assert base.spec is not None and base.optimizer == "adam"
    assert [d.key for d in space.dimensions] == ["conv_blocks", "conv0.channels", "conv1.channels",
                                                 "conv2.channels", "dropout", "lr", "batch_size"]
    fast = load_space("configs/tune-fast.yaml")
    fast.check(fast.base_config())
    assert fast.base_config().model == "fast"


@pytest.mark.parametrize("space, message", [
    ({"learning_rate": [0.1]}, "space: learning_rate: unknown key; tunable: "),
    ({"val": ["split:0.1"]}, "space: val: unknown key (it stays fixed for every trial: give it as an option)"),
    ({"lr": {"log": [0.1, 0.01]}}, "space: lr: empty range [0.1, 0.01] (LOW must be below HIGH)"),
    ({"batch_size": []}, "space: batch_size: empty list of choices"),
    ({"momentum": [0.5, 1.5]}, "space: momentum: the config refuses 1.5 (trial: momentum: must be in [0, 1), got 1.5)"),
    ({"optimizer": ["sgd", "lion"]}, "space: optimizer: the config refuses 'lion' (trial: optimizer: expected one of "
                                     "sgd, adam, adamw, got 'lion')"),
    ({"conv0.channels": {"int": [8, 32]}}, "space: conv0.channels: varies a spec CNN, but the fixed config trains "
                                           "the registered model 'baseline'"),
    ({"epochs": {"int": [1, 4], "step": 2}}, "space: epochs: step 2 does not divide the range [1, 4]"),
    ({"lr": 0.1}, "space: lr: expected a list of choices or {log|float|int: [LOW, HIGH]}, got 0.1"),
])
def test_bad_spaces_are_one_line_errors_before_any_trial(space, message):
    with pytest.raises(SpaceError) as raised:
        parsed = load_space(space)
        parsed.check(parsed.base_config())
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_spec_keys_are_checked_against_the_spec():
    space = load_space("configs/tune-writeup002.yaml")
    base = space.base_config()
    for bad, message in [({"conv_blocks": {"int": [1, 4]}}, "the fixed spec has 3 conv blocks"),
                         ({"conv5.channels": [8]}, "the fixed spec has no block conv5"),
                         ({"fc2.neurons": [20]}, "fc2 is the output layer"),
                         ({"conv0.filter": [3, 40]}, "feature map shrinks")]:
        with pytest.raises(SpaceError, match=message):
            load_space({**bad}).check(base)


def test_an_option_given_wins_over_fixed_even_when_it_is_the_default(tmp_path):
    space = load_space({"fixed": {"optimizer": "adam", "batch_size": 64, "epochs": 5}, "lr": {"log": [1e-4, 1e-1]}})
    assert space.dimensions[0].low == 1e-4  # YAML 1.2 numbers: 1e-4 is a float, not the string "1e-4"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("epochs: 2\nweight_decay: 1e-4\n", encoding="utf-8")
    # --batch-size 32 is train's default, but given: it wins over fixed:'s 64; the --config file too
    base = space.base_config({"batch_size": 32, "config": config_file, "lr": None})
    assert (base.batch_size, base.optimizer, base.epochs, base.weight_decay) == (32, "adam", 2, 1e-4)
    assert space.base_config().batch_size == 64
    # From the API, a TrainConfig's values equal to the defaults cannot be told from unset ones
    assert space.base_config(TrainConfig(batch_size=32, seed=3)).batch_size == 64
    with pytest.raises(SpaceError, match=r"^space: fixed: options: epochs: must be a positive integer, got 0$"):
        load_space({"fixed": {"epochs": 0}, "lr": [0.1]}).base_config()


def test_bad_input_gets_one_line_and_status_2(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: {log: [1e-4\n", encoding="utf-8")
    assert_one_line_error(run("tune", "--space", broken, "--trials", "2", "--out", tmp_path / "a", "-q", check_code=2),
                          f"{broken}: not valid YAML")
    space = write_space(tmp_path / "space.yaml")
    assert_one_line_error(run("tune", "--space", space, "--trials", "2", "--workers", "2", "--out", tmp_path / "b", "-q",
                              check_code=2), "--workers 2: a SQLite study takes one worker at a time")
    # Nothing listens on port 1: the error names the server, never the password.
    result = run("tune", "--space", space, "--trials", "2", "--storage", "postgresql://me:s3cret@127.0.0.1:1/db",
                 "--out", tmp_path / "c", "-q", check_code=2)
    assert_one_line_error(result, "--storage postgresql://me:***@127.0.0.1:1/db: cannot open the study database",
                          "Connection refused")
    assert "s3cret" not in result.stderr + result.stdout
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------------- studies


@pytest.mark.slow
def test_a_sqlite_study_whose_best_yaml_reproduces_the_best_trial(tmp_path):
    space, out = write_space(tmp_path / "space.yaml"), tmp_path / "study"
    result = run("tune", "--space", space, "--trials", "4", *TINY, "--out", out)
    progress = [line for line in result.stderr.splitlines() if line.startswith("trial ")]
    assert len(progress) == 4 and all(" best " in line for line in progress)
    summary = json.loads((out / "tune.json").read_text())
    assert summary["finished"] == 4 and [t["number"] for t in summary["trials"]] == [0, 1, 2, 3]
    for number in range(4):
        assert {"config.yaml", "history.csv", "trial.json"} <= {p.name for p in (out / "trials" / f"{number:03d}").iterdir()}
    for name in ("report.html", "best.yaml", "tune-history.png", "study.db"):
        assert (out / name).is_file(), name
    best = summary["best"]
    assert f"best trial {best['number']}: val_accuracy {best['value']:.4f}" in result.stdout

    again = run("tune", "--space", space, "--trials", "4", *TINY, "--out", out, "--resume", "--quiet")
    assert f"best trial {best['number']}: val_accuracy {best['value']:.4f}" in again.stdout
    assert again.stderr == "" and json.loads((out / "tune.json").read_text())["finished"] == 4
    assert_one_line_error(run("tune", "--space", space, "--trials", "4", *TINY, "--out", out, "-q", check_code=2),
                          f"{out}: already holds a study; continue it with --resume")

    run("train", "--config", out / "best.yaml", "--out", tmp_path / "best", "--quiet")
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["val_accuracy"] == best["value"]  # same seed, same hold-out, same numbers


@pytest.mark.slow
def test_final_trains_the_best_config_on_all_training_images_and_tests_it(tmp_path):
    out = tmp_path / "study"
    result = run("tune", "--space", write_space(tmp_path / "space.yaml"), "--trials", "2", *TINY, "--final",
                 "--out", out)
    summary = json.loads((out / "tune.json").read_text())
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    config = yaml.safe_load((out / "final" / "config.yaml").read_text())
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert config["val"] == "test" and best["val"] == "balanced:20"  # no hold-out: every training image
    assert {key: value for key, value in config.items() if key != "val"} == {k: v for k, v in best.items() if k != "val"}
    assert summary["final"]["test_accuracy"] == metrics["test_accuracy"] > 0.5
    assert (out / "final" / "model.safetensors").is_file()
    assert f"final model: test accuracy {metrics['test_accuracy'] * 100:.3f}" in result.stdout
    page = (out / "report.html").read_text()
    assert "Final model" in page and f"test accuracy {metrics['test_accuracy'] * 100:.2f} %" in page


@pytest.mark.slow
def test_pruning_stops_trials_with_a_hopeless_learning_rate(tmp_path, fashion):
    # Seed 6: the random sampler draws 0.05, 0.05, 1e-7, 0.05, 1e-7, so the median pruner has two
    # finished trials to compare the hopeless ones with after their first epoch.
    summary = fmnist.tune({"lr": [0.05, 1e-7]}, tmp_path / "prune", trials=5, sampler="random", pruner="median",
                          config=TrainConfig(epochs=2, limit=1000, val="balanced:20", device="cpu", seed=6),
                          dataset=fashion)
    states = [(trial["params"]["lr"], trial["state"], trial["epochs"]) for trial in summary["trials"]]
    assert states == [(0.05, "complete", 2), (0.05, "complete", 2), (1e-7, "pruned", 1), (0.05, "complete", 2),
                      (1e-7, "pruned", 1)]
    assert summary["best"]["params"]["lr"] == 0.05 and summary["finished"] == 5


def test_a_study_name_taken_by_another_space_is_refused(tmp_path, postgres_url):
    storage = optuna.storages.RDBStorage(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    study = optuna.create_study(study_name="taken", storage=storage, direction="maximize")
    study.set_user_attr("fmnist", {"space": "0123456789abcdef", "metric": "val_accuracy"})
    result = run("tune", "--space", write_space(tmp_path / "space.yaml"), "--trials", "2", "--storage", postgres_url,
                 "--study", "taken", "--out", tmp_path / "out", "-q", check_code=2)
    assert_one_line_error(result, "--study taken: exists with another search space; choose another --study name")


@pytest.mark.slow
def test_two_workers_on_postgresql_finish_exactly_the_budget(tmp_path, postgres_url):
    out = tmp_path / "two"
    result = run("tune", "--space", write_space(tmp_path / "space.yaml"), "--trials", "5", *TINY, "--workers", "2",
                 "--storage", postgres_url, "--study", "two", "--out", out)
    summary = json.loads((out / "tune.json").read_text())
    numbers = [trial["number"] for trial in summary["trials"]]
    assert summary["finished"] == 5 and sorted(numbers) == [0, 1, 2, 3, 4]
    assert summary["counts"].get("fail", 0) == 0
    assert all(trial["fail_reason"] is None for trial in summary["trials"]) and "Traceback" not in result.stderr
    # both workers ran trials of the one study, each line saying whose it was
    lines = [line for line in result.stderr.splitlines() if " trial " in line]
    assert len(lines) == 5 and {line.split("]")[0] for line in lines} == {"[worker 1", "[worker 2"}


@pytest.mark.slow
def test_a_worker_killed_in_mid_trial_leaves_no_running_trial(tmp_path, postgres_url, monkeypatch):
    monkeypatch.setenv("FMNIST_TUNE_HEARTBEAT", "1,3")  # tests only: a dead worker's trial is stale after 3 s
    space = write_space(tmp_path / "space.yaml")
    args = ("tune", "--space", space, "--trials", "3", "--limit", "2000", "--epochs", "2", "--val", "balanced:20",
            "--device", "cpu", "--storage", postgres_url, "--study", "kill", "--quiet")
    victim = subprocess.Popen([FMNIST, *map(str, args), "--out", str(tmp_path / "victim")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = None
    for _ in range(1200):  # until the victim's first trial has begun training
        folders = sorted((tmp_path / "victim" / "trials").glob("*/config.yaml"))
        if folders:
            started = int(folders[0].parent.name)
            break
        assert victim.poll() is None, "the victim finished before it could be killed"
        time.sleep(0.1)
    assert started is not None
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    run("tune", *args[1:], "--out", tmp_path / "survivor")

    storage = optuna.storages.RDBStorage(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    trials = optuna.load_study(study_name="kill", storage=storage).get_trials()
    states = {trial.number: trial.state for trial in trials}
    assert optuna.trial.TrialState.RUNNING not in states.values()
    assert states[started] == optuna.trial.TrialState.FAIL
    retries = [trial for trial in trials if trial.system_attrs.get("failed_trial") == started]
    assert len(retries) == 1 and retries[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert retries[0].params == next(trial.params for trial in trials if trial.number == started)
    assert len(trials) == 4  # the budget of 3, plus the killed trial its retry stands in for
