"""fmnist/runtime.py: a training run makes glibc's malloc keep freed memory, so its steps stop faulting in the same
pages every step; a malloc setting the user made wins; importing fmnist alone leaves malloc as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# 40 write-up-000 baseline steps at batch 32 through the trainer's own set-up, after 10 untimed ones; prints the
# minor page faults per step and whether malloc was told to keep freed memory (before and after the set-up).
STEPS = """
import json, resource
import fmnist
from torch.nn import functional as F
from fmnist import runtime
from fmnist.engine.config import TrainConfig
from fmnist.engine.trainer import setup
before_setup = runtime.kept_freed_memory
training = setup(TrainConfig(model="baseline", device="cpu", precision="fp32", threads=1),
                 fmnist.load_dataset(download=False).limit(train=1600, test=100))
model, optimizer, data = training.trainer, training.optimizer, training.data
def step(i):
    batch = slice(32 * i, 32 * i + 32)
    loss = F.cross_entropy(model(data.train_x[batch]), data.train_y[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
for i in range(10):
    step(i)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(10, 50):
    step(i)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40
print(json.dumps({"faults_per_step": faults, "kept": runtime.kept_freed_memory, "kept_at_import": before_setup}))
"""

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
                                 reason="glibc's malloc only")


def _steps(**env_added: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_") and key != "FMNIST_MALLOC"}
    env.update(env_added, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@linux_glibc
def test_training_steps_reuse_freed_memory_instead_of_faulting_pages_in():
    ours, glibcs = _steps(), _steps(FMNIST_MALLOC="glibc")
    assert ours["kept"] and not ours["kept_at_import"] and not glibcs["kept"]
    if glibcs["faults_per_step"] < 100:  # ~1,000 per step where measured (benchmarks/page_faults.py)
        pytest.skip(f"glibc's own malloc faulted {glibcs['faults_per_step']:.0f} times per step here (huge pages, "
                    "a preloaded allocator?): nothing to compare")
    assert ours["faults_per_step"] < glibcs["faults_per_step"] / 10


@linux_glibc
def test_a_malloc_setting_of_the_user_wins():
    assert not _steps(MALLOC_MMAP_THRESHOLD_="131072")["kept"]
