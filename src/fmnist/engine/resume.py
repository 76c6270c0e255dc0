"""The state an exact `--resume` needs beyond the weights: the optimizer's and every random generator's.

It travels in the run's resume checkpoint (`checkpoints/resume.safetensors`, a model file whose extra
tensors and metadata hold it), so it is read without unpickling like every model file.
"""

from __future__ import annotations

import torch


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
