"""The machine a benchmark ran on, recorded with its figures: a figure from one CPU is not a figure for another
(AVX512-BF16 trains in bf16, AVX2 in fp32), nor from a busy machine for an idle one."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from pathlib import Path


def machine() -> dict:
    """CPU model, cores, the vector flags that decide the kernels (AVX*, FMA, AMX), Python and torch versions, the
    load average and the busiest processes at the moment of the call."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: what platform knows
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    busiest = subprocess.run(["ps", "-eo", "pid,ni,pcpu,etime,comm", "--sort=-pcpu"], capture_output=True,
                             text=True, check=False).stdout.splitlines()[:6]
    return {"cpu": fields.get("model name") or platform.processor(), "cores": os.cpu_count(),
            "flags_of_note": [flag for flag in fields.get("flags", "").split() if flag.startswith(("avx", "fma", "amx"))],
            "python": platform.python_version(), "torch": torch_version, "load_average": os.getloadavg(),
            "busiest": busiest}


# Emulating an older CPU on a newer one (issue 18): fmnist.runtime.AVX2_ONLY holds oneDNN (TensorFlow's too), ATen
# and MKL to AVX2 + FMA in the processes started with it. Spelled out here, not imported: importing fmnist sets its
# runtime defaults in the importing process, and a peer's worker (vs_keras.py's Keras) must run without them.
ISAS = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                               "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
ISA_VARIABLES = tuple(ISAS["avx2"])


def isa_environment(isa: str, base: dict | None = None) -> dict:
    """A copy of `base` (default: os.environ) whose libraries use instruction set `isa` ("native": the CPU's own)."""
    env = {key: value for key, value in (os.environ if base is None else base).items() if key not in ISA_VARIABLES}
    env.update(ISAS[isa])
    return env


def describe(recorded: dict) -> str:
    """One line for a table's caption: CPU, cores, the flags that decide the kernels, load average."""
    return (f"{recorded['cpu']}, {recorded['cores']} cores, {' '.join(recorded['flags_of_note'])}; load average "
            f"{recorded['load_average'][0]:.1f} at the start")


def spread(values: list[float], digits: int = 1) -> str:
    """mean ± sample std of repeated measurements (the value alone when there is one)."""
    if len(values) < 2:
        return f"{values[0]:,.{digits}f}"
    return f"{statistics.mean(values):,.{digits}f} ± {statistics.stdev(values):,.{digits}f}"


def write_results(path: Path, results: dict) -> None:
    """`results` as indented JSON at `path`, written under a temporary name and renamed: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(path)
