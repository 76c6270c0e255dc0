"""The state an exact `--resume` needs beyond the weights: the optimizer's, every random generator's, and
the best epoch so far (`Best`, which early stopping restores).

It travels in the run's resume checkpoint (`checkpoints/resume.safetensors`, a model file whose extra
tensors and metadata hold it), so it is read without unpickling like every model file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


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


@dataclass
class Best:
    """The best validation accuracy so far, its epoch and checkpoint, and the epochs since."""

    val_accuracy: float = -1.0
    epoch: int = 0
    path: str | None = None  # the best checkpoint, relative to checkpoints/ (the run folder can move)
    stale: int = 0  # epochs without a better val_accuracy
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # restored by early stopping

    def update(self, row: dict, model: nn.Module) -> bool:
        """Take the epoch's `row`; True when it is a new best (its weights are then kept)."""
        if row["val_accuracy"] > self.val_accuracy:
            self.val_accuracy, self.epoch, self.stale = row["val_accuracy"], row["epoch"], 0
            self.weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
            return True
        self.stale += 1
        return False

    def state(self) -> dict:
        """What the resume checkpoint records (a JSON object; its keys in this order)."""
        return {"val_accuracy": self.val_accuracy, "epoch": self.epoch, "path": self.path, "stale": self.stale}

    @classmethod
    def from_state(cls, values: dict) -> Best:
        return cls(values["val_accuracy"], values["epoch"], values["path"], values["stale"])
