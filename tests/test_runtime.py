"""fmnist/runtime.py: importing fmnist makes glibc's malloc keep freed memory, so training steps stop faulting in
the same pages every step; a malloc setting the user made wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# 40 write-up-000 baseline steps at batch 32 after 10 untimed ones; prints the minor page faults per step.
STEPS = """
import json, resource, sys
import fmnist, torch
from torch.nn import functional as F
from fmnist import models, runtime
torch.manual_seed(0)
data = fmnist.load_dataset(download=False)
images = torch.from_numpy(data.train.images[:1600]).unsqueeze(1)
labels = torch.from_numpy(data.train.labels[:1600]).long()
model = models.create("baseline").to(memory_format=torch.channels_last)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
def step(i):
    batch = slice(32 * i, 32 * i + 32)
    loss = F.cross_entropy(model(images[batch]), labels[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
for i in range(10):
    step(i)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(10, 50):
    step(i)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40
print(json.dumps({"faults_per_step": faults, "kept": runtime.keep_freed_memory()}))
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
    steps = _steps()
    assert steps["kept"]
    # glibc's defaults: ~1,100 faults per step (the 2.8 MB activations go back to the kernel and come again)
    assert steps["faults_per_step"] < 50


@linux_glibc
@pytest.mark.parametrize("setting", [{"FMNIST_MALLOC": "glibc"}, {"MALLOC_MMAP_THRESHOLD_": "131072"}])
def test_glibcs_own_behaviour_or_a_malloc_setting_of_the_user_wins(setting):
    # fmnist leaves malloc alone, and the activations' pages fault in again every step
    steps = _steps(**setting)
    assert not steps["kept"]
    assert steps["faults_per_step"] > 200
