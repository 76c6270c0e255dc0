"""Run-folder files the trainer keeps up to date: history.csv and the resume state.

The resume state is a model file (`checkpoints/resume.safetensors`) whose extra tensors and
metadata hold the optimizer state and every random generator, so `--resume` continues exactly
where the run stopped. Like every model file it is read without unpickling.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from fmnist._io import write_text_atomic

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def write_history(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
    write_text_atomic(path, buffer.getvalue())


def read_history(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {key: (int(value) if key == "epoch" else float(value)) for key, value in row.items() if value != ""}
            for row in csv.DictReader(handle)
        ]


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split the optimizer's state into tensors (for safetensors) and JSON values."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{param_id}.{name}"] = value
            else:
                scalars[f"{param_id}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], values: dict) -> None:
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        if key.startswith("optim."):
            param_id, name = key[len("optim."):].split(".", 1)
            state.setdefault(int(param_id), {})[name] = tensor
    for key, value in values["scalars"].items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": values["param_groups"]})


def rng_state(shuffle: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    states = {"rng.torch": torch.get_rng_state(), "rng.shuffle": shuffle.get_state()}
    if device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(tensors: dict[str, torch.Tensor], shuffle: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    shuffle.set_state(tensors["rng.shuffle"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def write_json(path: Path, value: dict) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
