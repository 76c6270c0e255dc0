"""Many processes under torchrun (gloo on 127.0.0.1): data-parallel training is the 1-process run,
cross-validation deals folds to ranks and writes what one process writes, and a dead worker's run is
continued by torchrun's restart. Real torchrun, real processes, small slices of the real data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fmnist
from fmnist.engine import distributed
from fmnist.engine.config import TrainConfig
from fmnist.errors import FmnistError
from fmnist.modelfile import load_model
from fmnist.runfolder import RunFolder
from fmnist.workflows.crossval import cross_validate

TIMEOUT = 300  # seconds for one torchrun launch (two processes importing torch on a loaded 2-core machine)


def torchrun(*args, processes: int = 2, extra: tuple = (), timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N [extra] -m fmnist ARGS`, on the loopback interface."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               *extra, "-m", "fmnist", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_loopback())


def _loopback() -> dict:
    return {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).model.state_dict()


def assert_same_weights(first: Path, second: Path, tolerance: float = 1e-5) -> None:
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    worst = max(float((a[key] - b[key]).abs().max()) for key in a)
    assert worst <= tolerance, worst


def files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")
            if path.is_file() and path.name not in (".lock", ".torchrun")}


# --------------------------------------------------------------------------- the world torchrun describes

def test_no_torchrun_means_no_world():
    assert distributed.World.from_env({}) is None
    assert distributed.World.from_env({"RANK": "0"}) is None


def test_the_world_is_read_from_torchruns_variables():
    world = distributed.World.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                                        "TORCHELASTIC_RESTART_COUNT": "1", "TORCHELASTIC_RUN_ID": "abc"})
    assert world == distributed.World(rank=3, size=4, local_rank=1, local_size=2, run_id="abc")
    assert not world.main and distributed.World(0, 4, 0, 2).main


def _generations(*ranks_in_order: int, size: int = 2, port: int) -> dict[int, str]:
    """Each of `ranks_in_order` enters `_generation` in a thread of its own, with a store client of its own,
    started in that order 0.2 s apart; their prefixes by rank."""
    found: dict[int, str] = {}

    def enter(rank: int) -> None:
        client = torch.distributed.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
        found[rank] = distributed._generation(distributed.World(rank, size, rank, size), client, timeout=60)

    threads = [threading.Thread(target=enter, args=(rank,)) for rank in ranks_in_order]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=90)
    return found


def test_a_restarted_generation_of_processes_agrees_on_a_fresh_store_prefix():
    # torchrun keeps one store for every restart: the dead generation's greeting and answer stay in it.
    server = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    first = _generations(0, 1, 2, size=3, port=server.port)
    assert len(set(first.values())) == 1 and len(first) == 3
    # The next generation, rank 1 first this time: it must not take the dead rank 0's answer.
    second = _generations(1, 2, 0, size=3, port=server.port)
    assert len(set(second.values())) == 1 and len(second) == 3
    assert second[0] != first[0]


def test_rank_0_says_which_ranks_never_came():
    server = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with pytest.raises(FmnistError, match=r"rank\(s\) \[1\] did not join the process group in 1 s"):
        distributed._generation(distributed.World(0, 2, 0, 2), server, timeout=1)


def test_a_torchrun_restart_continues_only_a_run_its_own_launch_began(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    assert not run.begun_by("abc")
    run.mark_launch("abc")
    assert not run.begun_by("abc")  # killed before it saved its config: nothing to continue
    run.config.write_text("model: baseline\n")
    assert run.begun_by("abc") and not run.begun_by("abcd") and not run.begun_by("")


@pytest.mark.parametrize("environ, fragment", [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x'"),
    ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}, "rank 2 of 2"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK='-1'"),
])
def test_a_broken_torchrun_environment_is_one_error(environ, fragment):
    with pytest.raises(FmnistError) as error:
        distributed.World.from_env(environ)
    assert fragment in str(error.value)


@given(count=st.integers(0, 300), size=st.integers(1, 9))
def test_shards_take_every_item_once_in_order(count, size):
    parts = [range(count)[distributed.shard(count, rank, size)] for rank in range(size)]
    assert [item for part in parts for item in part] == list(range(count))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_automatic_threads_give_each_torchrun_process_its_share(monkeypatch):
    from fmnist.device import automatic_threads, available_cores

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun sets for every process
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert automatic_threads() == available_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(available_cores() * 2))
    assert automatic_threads() == 1


# --------------------------------------------------------------------------- data-parallel training

def test_two_processes_train_what_one_process_trains(tmp_path, small_idx_dir):
    # Write-up 000's baseline (no batch norm, no dropout) with flips and crops: every rank draws the same
    # order and augmentation and takes its share of each global batch of 89 (270 images: the last batch
    # has 3, shared 2 + 1). The gradients are the global batch's mean: the same weights as one process.
    # fp32: under bf16 autocast (--precision auto on an AVX512-BF16 CPU) a half batch rounds its activations
    # otherwise than the whole one, and the weights end ~2e-3 apart.
    options = ["--model", "baseline", "--epochs", "2", "--batch-size", "89", "--augment", "flip+crop",
               "--val", "split:0.1", "--threads", "1", "--precision", "fp32", "--data", small_idx_dir]
    one = tmp_path / "one"
    fmnist.train(TrainConfig(model="baseline", epochs=2, batch_size=89, augment="flip+crop", val="split:0.1",
                             threads=1, precision="fp32", data=str(small_idx_dir)), one)
    result = torchrun("train", *options, "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    two = tmp_path / "two"
    assert_same_weights(one / "model.safetensors", two / "model.safetensors")
    first, second = RunFolder(one).read_history(), RunFolder(two).read_history()
    assert len(first) == len(second) == 2
    for a, b in zip(first, second):
        assert a["val_accuracy"] == b["val_accuracy"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert files(one) == files(two)  # rank 0 alone wrote, and wrote everything
    assert result.stdout.count("test accuracy") == 1  # rank 0 alone prints the results
    assert "training baseline on 270 images" in result.stderr


def test_two_processes_train_under_bf16_autocast_as_one_process_does(tmp_path, small_idx_dir):
    # The test above pins fp32; this one runs the bf16 path (--precision auto on an AVX512-BF16 CPU; emulated,
    # so slower, elsewhere) through DistributedDataParallel. Half batches round otherwise than whole ones, so
    # the weights are close, not equal. Measured: 2e-3 apart; one process at twice the learning rate ends far
    # further from the two than the bound, so a wrong step (a gradient not averaged, a share taken twice)
    # would fail it.
    config = dict(model="baseline", epochs=2, batch_size=89, augment="flip+crop", val="split:0.1", threads=1,
                  precision="bf16", data=str(small_idx_dir))
    fmnist.train(TrainConfig(**config), tmp_path / "one")
    fmnist.train(TrainConfig(**{**config, "lr": 0.02}), tmp_path / "faster")
    result = torchrun("train", "--model", "baseline", "--epochs", "2", "--batch-size", "89", "--augment", "flip+crop",
                      "--val", "split:0.1", "--threads", "1", "--precision", "bf16", "--data", small_idx_dir,
                      "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bf16 autocast" in result.stderr
    bound = 0.02
    assert_same_weights(tmp_path / "one" / "model.safetensors", tmp_path / "two" / "model.safetensors", bound)
    with pytest.raises(AssertionError):
        assert_same_weights(tmp_path / "faster" / "model.safetensors", tmp_path / "two" / "model.safetensors", bound)
    first, second = RunFolder(tmp_path / "one").read_history(), RunFolder(tmp_path / "two").read_history()
    assert first[-1]["loss"] == pytest.approx(second[-1]["loss"], rel=0.02)


def test_a_refusal_stops_every_process_with_its_one_line(tmp_path, small_idx_dir):
    out = tmp_path / "taken"
    RunFolder(out).start("model: baseline\n")
    result = torchrun("train", "--model", "baseline", "--epochs", "1", "--data", small_idx_dir, "--out", out,
                      timeout=120)
    assert result.returncode != 0
    assert result.stderr.count("fmnist: error: ") == 2, result.stderr[-3000:]  # each process, the same line
    assert "already holds a run" in result.stderr and "[rank" not in result.stderr  # no rank's traceback
    assert files(out) == {"config.yaml"}


def _rank_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the worker processes torchrun (pid `parent`) started."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        ancestors = [line.split()[1] for line in status.splitlines() if line.startswith("PPid:")]
        variables = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        if ancestors == [str(parent)] and b"RANK" in variables and b"TORCHELASTIC_RUN_ID" in variables:
            found[int(variables[b"RANK"])] = int(entry.name)
    return found


@pytest.mark.slow
def test_torchrun_restarts_a_dead_worker_and_the_run_goes_on_from_its_last_epoch(tmp_path, fashion):
    out = tmp_path / "run"
    # Epochs of 5,400 images (long enough to kill a worker in one) in batches of 500: few steps, so that
    # the two processes' summation order leaves the weights within 1e-5 of one process's (over hundreds of
    # steps of batch 32 it grows to 1e-2: floating point, not the resume, measured).
    options = ["--model", "baseline", "--epochs", "4", "--limit", "6000", "--val", "split:0.1", "--threads", "1",
               "--augment", "flip", "--batch-size", "500", "--precision", "fp32"]  # fp32: see the test above
    # Before each generation of processes had a store prefix of its own, the restarted ranks read the dead
    # ones' gloo addresses from torchrun's store: "connectFullMesh failed ... Connection refused" and a
    # restart more, or a hang (3 of 6 launches). --max-restarts 2: one for the kill, one spare (a rank used
    # to abort at its exit after the last epoch, 1 in 24 launches; distributed.exit_if_joined ends it now).
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=2",
               "-m", "fmnist", "train", *options, "--out", str(out)]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_loopback())
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (out / "history.csv").is_file() or len(RunFolder(out).read_history()) < 1:
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
            time.sleep(0.05)
        os.kill(_rank_pids(launcher.pid)[1], signal.SIGKILL)  # rank 1 dies in epoch 2
        stdout, stderr = launcher.communicate(timeout=TIMEOUT)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, stderr[-3000:]
    assert "resuming" in stderr and f"{out}" in stderr
    assert "connectFullMesh failed" not in stderr, stderr[-3000:]
    history = RunFolder(out).read_history()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    # The run continued exactly: the weights of an uninterrupted one-process run.
    fmnist.train(TrainConfig(model="baseline", epochs=4, limit=6000, val="split:0.1", threads=1, augment="flip",
                             batch_size=500, precision="fp32"), tmp_path / "one")
    assert_same_weights(tmp_path / "one" / "model.safetensors", out / "model.safetensors")


# --------------------------------------------------------------------------- cross-validation

def test_two_processes_cross_validate_fold_for_fold_as_one(tmp_path, small_idx_dir, fashion):
    # --final: 300 images, the last batch of 1 leaves rank 1 none. --parallel-folds 2: rank 0 trains its
    # folds 1 and 3 stacked, rank 1 its fold 2 alone; one process trains all three one after another.
    options = ["--model", "baseline", "--folds", "3", "--epochs", "1", "--threads", "1", "--data", small_idx_dir,
               "--final", "--batch-size", "299", "--parallel-folds", "2"]
    one = tmp_path / "one"
    config = TrainConfig(model="baseline", epochs=1, threads=1, batch_size=299, data=str(small_idx_dir))
    expected = cross_validate([config], one, folds=3, final=True, parallel_folds=1)
    result = torchrun("cv", *options, "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "cv.json").read_text())
    (model,) = summary["models"]
    assert model["scores"] == expected["models"][0]["scores"]
    assert model["parallel_folds"] == 2  # rank 0's stack
    assert summary["folds_sha256"] == expected["folds_sha256"]
    assert [len(history) for history in model["histories"]] == [1, 1, 1]
    assert model["final"]["test_accuracy"] == pytest.approx(expected["models"][0]["final"]["test_accuracy"], abs=0.011)
    assert files(one) == files(tmp_path / "two")
    for fold in (1, 2, 3):
        assert (one / f"fold-{fold}" / "config.yaml").read_text() == \
            (tmp_path / "two" / f"fold-{fold}" / "config.yaml").read_text()
    # Folds 1 and 3 on rank 0, fold 2 on rank 1; rank 0 prints the scores, in fold order.
    assert "rank 1: baseline fold 2/3" in result.stderr and "rank 1: baseline fold 1/3" not in result.stderr
    scores = [line for line in result.stdout.splitlines() if line.startswith("> ")]
    assert scores == [f"> {score * 100:.3f}" for score in model["scores"]]


def test_two_hosts_meet_by_c10d_rendezvous_and_only_rank_0s_host_writes(tmp_path, small_idx_dir):
    # Two torchrun launches, one process each, as on two machines (README's two commands), here in two
    # folders of one machine on the loopback interface.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=two-hosts",
               "-m", "fmnist", "cv", "--model", "baseline", "--folds", "3", "--epochs", "1", "--threads", "1",
               "--data", str(small_idx_dir), "--out", "cv"]
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    launches = []
    for host in hosts:
        host.mkdir()
        launches.append(subprocess.Popen(command, cwd=host, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env=_loopback()))
    try:
        outputs = [launch.communicate(timeout=TIMEOUT) for launch in launches]
    finally:
        for launch in launches:
            launch.kill()
    assert [launch.returncode for launch in launches] == [0, 0], [err[-2000:] for _, err in outputs]
    written = [host for host in hosts if (host / "cv").exists()]
    assert len(written) == 1  # the host of rank 0
    summary = json.loads((written[0] / "cv" / "cv.json").read_text())
    assert summary["models"][0]["n"] == 3
    assert {f"fold-{fold}/history.csv" for fold in (1, 2, 3)} <= files(written[0] / "cv")
    assert sum("Accuracy: mean=" in out for out, _ in outputs) == 1


# --------------------------------------------------------------------------- the end of a process in a group

EXIT = """
import sys
from fmnist.engine import distributed
distributed._joined = {joined}
print("written before the end", end="")  # unflushed: the exit must flush it
distributed.exit_if_joined({code!r})
print(" and after", end="")
"""


@pytest.mark.parametrize(("joined", "code", "status", "stderr"), [(True, 3, 3, ""), (True, None, 0, ""),
                                                                  (True, "a message", 1, "a message"),
                                                                  (False, 3, 0, "")])
def test_a_process_that_joined_a_group_ends_at_once_with_its_status_and_its_output(joined, code, status, stderr):
    # after destroy_process_group, C++'s teardown of gloo's threads could abort a finished process (SIGABRT)
    done = subprocess.run([sys.executable, "-c", EXIT.format(joined=joined, code=code)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == status
    assert done.stdout == ("written before the end" if joined else "written before the end and after")
    assert done.stderr.strip() == stderr
