"""Many processes, on one machine or several, started by PyTorch's own launcher, torchrun.

torchrun (`torchrun --nproc-per-node N -m fmnist train …`) tells each process who it is in
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, …): `World.from_env` reads them, `join` enters
the process group (gloo on CPUs, NCCL on CUDA GPUs), and the helpers below are the few collective
steps training and cross-validation need. Rank 0 alone writes files; the others compute.

    torchrun ─ env ─► World ─ join ─► fit (DistributedDataParallel) / cross_validate (folds dealt to ranks)
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from fmnist.errors import FmnistError

T = TypeVar("T")
_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    rank: int  # 0 … size - 1, unique across machines; rank 0 writes the files
    size: int  # processes in all
    local_rank: int  # on this machine: which GPU is this process's
    local_size: int  # processes on this machine (they share its cores)
    run_id: str = ""  # torchrun's --rdzv-id (a fresh one per --standalone launch), the same on every restart

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> World | None:
        """The world torchrun describes in `environ`; None when this process was not started by it."""
        if "WORLD_SIZE" not in environ or "RANK" not in environ:
            return None
        values = {}
        for name in _VARIABLES:
            text = environ.get(name, "0" if name == "LOCAL_RANK" else environ.get("WORLD_SIZE"))
            if not text.strip().isdigit():
                raise FmnistError(f"environment variable {name}={text!r}: expected a whole number (torchrun sets it)")
            values[name] = int(text)
        world = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"],
                    environ.get("TORCHELASTIC_RUN_ID", ""))
        if not (world.size >= 1 and 0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size):
            raise FmnistError(f"torchrun environment: rank {world.rank} of {world.size}, local rank "
                              f"{world.local_rank} of {world.local_size} does not add up")
        return world


def join(world: World) -> None:
    """Enter torchrun's process group (once per process): gloo for CPU tensors and, where CUDA is, NCCL for
    GPU tensors, each process on the GPU of its local rank. The store comes from the environment
    (MASTER_ADDR/MASTER_PORT: torchrun's agent store, or one rank 0 hosts), and the group's keys go under
    a prefix of this generation's own (`_generation`)."""
    if dist.is_initialized():
        return
    store, _, _ = next(dist.rendezvous("env://", world.rank, world.size))
    prefix = _generation(world, store)
    if torch.cuda.is_available():
        if world.local_rank < torch.cuda.device_count():
            torch.cuda.set_device(world.local_rank)
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, store=dist.PrefixStore(prefix + "group/", store), rank=world.rank,
                            world_size=world.size)
    global _joined
    _joined = True


_joined = False  # whether this process joined a process group (exit_if_joined)
_GREETINGS = "fmnist/greeting/"  # + rank: a fresh process's nonce
_ANSWERS = "fmnist/answer/"  # + nonce: rank 0's token for the process that sent it
_POLL_SECONDS = 0.02


def _generation(world: World, store: dist.Store, timeout: float = 1800.0) -> str:
    """A key prefix that every process of this generation, and only they, use: a token rank 0 draws.

    torchrun (2.5 and later) keeps one agent store for the whole launch and restarts the processes
    into it without clearing it, so a restarted process can read a dead one's keys (its gloo address:
    "Connection refused", or both ranks waiting forever in connectFullMesh; pytorch#135712), and
    TORCHELASTIC_RESTART_COUNT is no namespace (each machine's agent counts its own restarts). So:
    every other rank writes a nonce of its own and waits for rank 0's answer to it; rank 0 answers
    every nonce it sees (a dead process's too, harmlessly) until each rank has said, under the new
    token, that it has it. Nothing stale can pass: only a live rank 0 can answer a fresh nonce."""
    if world.rank == 0:
        token = uuid.uuid4().hex
        answered: set[bytes] = set()
        waiting = set(range(1, world.size))
        deadline = time.monotonic() + timeout
        while waiting:
            for rank in sorted(waiting):
                if store.check([f"fmnist/{token}/ready/{rank}"]):
                    waiting.discard(rank)
                elif store.check([f"{_GREETINGS}{rank}"]):
                    nonce = store.get(f"{_GREETINGS}{rank}")
                    if nonce not in answered:
                        store.set(_ANSWERS + nonce.decode(), token)
                        answered.add(nonce)
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise FmnistError(f"rank(s) {sorted(waiting)} did not join the process group in {timeout:.0f} s")
            time.sleep(_POLL_SECONDS)
    else:
        nonce = uuid.uuid4().hex
        store.set(f"{_GREETINGS}{world.rank}", nonce)
        token = store.get(_ANSWERS + nonce).decode()  # waits (the store's timeout) for rank 0
        store.set(f"fmnist/{token}/ready/{world.rank}", "1")
    return f"fmnist/{token}/"


def device_of(world: World, device: torch.device) -> torch.device:
    """This rank's device when the run trains on `device`: the CPU, or its own GPU (cuda:LOCAL_RANK)."""
    if device.type != "cuda":
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise FmnistError(f"local rank {world.local_rank} has no GPU of its own ({torch.cuda.device_count()} "
                          "visible); start at most one process per GPU (torchrun --nproc-per-node)")
    return torch.device("cuda", world.local_rank)


def start() -> World | None:
    """The world torchrun started this process in, its process group joined when it has more than one
    process; None when torchrun did not start this process."""
    world = World.from_env()
    if world is not None and world.size > 1:
        join(world)
    return world


def leave() -> None:
    """Leave the process group (the end of a command); nothing when there is none."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def joined() -> bool:
    """Whether this process joined a process group (it stays so after leave(): see exit_if_joined)."""
    return _joined


def exit_if_joined(code: int | str | None) -> None:
    """End a process that was in a process group now, with `code` (sys.exit's argument), skipping the
    interpreter's and C++'s teardown: after destroy_process_group, gloo's threads could still be joinable
    when C++ destroyed them, and the process died of SIGABRT ("terminate called without an active exception",
    no Python frame left) after its work was done and written: 6 of 22 two-process `cv` launches on a 2-core
    AVX512-BF16 EPYC (0 of 12 since), 1 in 24 on an AVX2 one (pytorch's own proposal,
    an atexit destroy_process_group, was withdrawn: pytorch#179291). Nothing is left to clean up: files
    are written and renamed, the group is left; the output streams are flushed first."""
    if not _joined:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can reach it
            pass
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message") prints the message and exits with 1
        print(code, file=sys.stderr, flush=True)
        status = 1
    os._exit(status)


def on_main(world: World | None, work: Callable[[], T]) -> T:
    """Run `work` on rank 0 alone and return its result on every rank; its FmnistError is raised on
    every rank, so that all processes stop with the same one line instead of the others waiting in a
    collective step for a rank that left."""
    if world is None or world.size == 1:
        return work()
    box: list[Any] = [None]
    if world.main:
        try:
            box = [("value", work())]
        except FmnistError as exc:
            box = [("error", str(exc))]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise FmnistError(value)
    return value


def broadcast(world: World | None, value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if world is None or world.size == 1:
        return value
    box = [value if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World | None, value: Any) -> list[Any] | None:
    """Every rank's `value`, in rank order, on rank 0; None on the others."""
    if world is None or world.size == 1:
        return [value]
    values = [None] * world.size if world.main else None
    dist.gather_object(value, values, dst=0)
    return values


def shard(count: int, rank: int, size: int) -> slice:
    """Rank `rank`'s contiguous part of `count` items shared by `size` ranks (the first `count % size`
    ranks take one more; a rank can have none)."""
    base, extra = divmod(count, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def sum_all(values: list[float], device: torch.device) -> list[float]:
    """The element-wise sum of `values` over every rank."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_rows(part: torch.Tensor, count: int, world: World) -> torch.Tensor:
    """Every rank's `part` (its shard of `count` rows), concatenated in rank order, on every rank."""
    largest = -(-count // world.size)
    padded = torch.zeros((largest, *part.shape[1:]), dtype=part.dtype, device=part.device)
    padded[: len(part)] = part
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat([piece[: len(range(count)[shard(count, rank, world.size)])] for rank, piece in enumerate(parts)])


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank: each rank updated its own from
    its share of the last batch, and what is evaluated and saved must be one model."""
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


class OwnStream:
    """A random stream of this rank's own on `device`, for one epoch: within `with stream:` the device's
    default generator (what dropout draws from) runs from it, and the shared stream (the augmentation every
    rank draws alike) is put back after. Seeded from (seed, rank, epoch): a resumed run draws the same."""

    def __init__(self, device: torch.device, seed: int, rank: int, epoch: int):
        self.generator = torch.cuda.default_generators[device.index or 0] if device.type == "cuda" \
            else torch.default_generator
        shared = self.generator.get_state()
        self.generator.manual_seed(int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0]))
        self.state = self.generator.get_state()
        self.generator.set_state(shared)
        self.shared: torch.Tensor | None = None

    def __enter__(self) -> OwnStream:
        self.shared = self.generator.get_state()
        self.generator.set_state(self.state)
        return self

    def __exit__(self, *exc) -> None:
        self.state = self.generator.get_state()
        self.generator.set_state(self.shared)
