"""Which device runs the work: `auto` picks CUDA when present, else the CPU."""

from __future__ import annotations

import os

import torch

from fmnist.errors import FmnistError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` → cuda if available else cpu; `cuda` without a GPU is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FmnistError(f"--device {name}: no CUDA device is available (torch {torch.__version__})")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise FmnistError(f"--device {name}: expected one of {', '.join(DEVICE_CHOICES)}")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    return f"cpu ({torch.get_num_threads()} threads of {os.cpu_count()} cores)"
