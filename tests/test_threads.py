"""`--threads N` / `threads:`: torch's intra-op CPU threads for training (benchmarks/threads.py measured why)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from test_cli import assert_one_line_error, run

from fmnist.device import automatic_threads, available_cores, resolve_threads
from fmnist.engine.config import ConfigError, TrainConfig, build_config
from fmnist.engine.trainer import fit
from fmnist.errors import FmnistError


@pytest.fixture
def torch_threads():
    """Training sets the process's thread count; put back what the other tests run with."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_fit_uses_the_threads_asked_for_and_automatic_uses_every_core(tmp_path, fashion, torch_threads):
    small = fashion.limit(train=200, test=100)
    values = dict(model="dense", epochs=1, device="cpu", precision="fp32", checkpoint="none")
    result = fit(TrainConfig(threads=1, **values), tmp_path / "one", dataset=small)
    assert result.threads == 1 and torch.get_num_threads() == 1
    result = fit(TrainConfig(**values), tmp_path / "auto", dataset=small)  # threads 0: automatic
    assert result.threads == automatic_threads() == torch.get_num_threads()


@pytest.mark.parametrize("value, expected", [(None, "cores"), ("1", 1), (" 1 ", 1), ("1,2", 1), ("999", "cores"),
                                             ("0", "cores"), ("two", "cores"), ("", "cores")])
def test_automatic_threads_follow_omp_num_threads_when_it_is_set(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert automatic_threads() == resolve_threads(0) == (available_cores() if expected == "cores" else expected)


def test_threads_values():
    assert TrainConfig().threads == 0 and resolve_threads(0) == automatic_threads() and resolve_threads(1) == 1
    for bad in (-1, 1025, "two", True, 1.5, None):
        with pytest.raises(ConfigError, match="threads: must be 0"):
            TrainConfig(threads=bad)
    with pytest.raises(FmnistError, match=f"at most {available_cores()}"):
        resolve_threads(available_cores() + 1)


def test_threads_from_a_config_file(tmp_path):
    config = tmp_path / "threads.yaml"
    config.write_text("model: dense\nthreads: 1\n")
    assert build_config(config).threads == 1
    assert build_config(config, threads=2).threads == 2  # the option wins over the file
    config.write_text("threads: two\n")
    with pytest.raises(ConfigError, match="threads: must be 0"):
        build_config(config)


def test_cli_threads_is_used_and_recorded(tmp_path, small_idx_dir, torch_threads):
    config = tmp_path / "threads.yaml"
    config.write_text("threads: 1\n")
    run("train", "--data", small_idx_dir, "--model", "dense", "--epochs", "1", "--checkpoint", "none", "--quiet",
        "--config", config, "--out", tmp_path / "run")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["threads"] == 1
    assert "threads: 1" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize(("value", "fragment"), [
    ("-1", "threads: must be 0 (automatic)"),
    ("two", "Invalid value for '--threads'"),
    ("1024", "CPU core"),  # within what a config may say, above this machine's cores
])
def test_cli_bad_threads_are_one_line_errors(tmp_path, small_idx_dir, value, fragment):
    if value == "1024" and available_cores() >= 1024:
        pytest.skip("a machine with 1,024 cores")
    result = run("train", "--data", small_idx_dir, "--model", "dense", "--epochs", "1", "--threads", value, "--quiet",
                 "--out", tmp_path / "run", check_code=2)
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize(("given", "expected"), [({}, {"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": None}),
                                               ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": None}),
                                               ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": None}),
                                               ({"GOMP_SPINCOUNT": "50"}, {"GOMP_SPINCOUNT": "50"})])
def test_importing_fmnist_makes_openmp_threads_spin_briefly_unless_the_user_said_otherwise(given, expected):
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(given)
    code = "import json, os, fmnist; print(json.dumps({k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert {key: seen[key] for key in expected} == expected
    assert {key: seen[key] for key in given} == given  # the user's own settings untouched


def test_resume_takes_threads_like_device(tmp_path):
    # a setting of the machine, not of the run: --resume refuses the run's own options, not this one
    result = run("train", "--resume", tmp_path / "nothing", "--threads", "1", "--quiet", check_code=2)
    assert_one_line_error(result)
    assert "drop" not in result.stderr
