"""A Keras-style layer table (`model.summary()`), so our models can be checked against the write-ups.

Keras counts BatchNormalization's moving mean and variance as non-trainable parameters; PyTorch keeps
them as buffers. We count them the Keras way, which makes totals comparable with the write-ups.
Output shapes are ours, NCHW: Keras's (None, 26, 26, 32) is printed as (None, 32, 26, 26).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from fmnist.models.fast import single_view

_KERAS_STAT_BUFFERS = ("running_mean", "running_var")  # BatchNorm's moving statistics; not num_batches_tracked


class SummaryRow(NamedTuple):
    name: str  # qualified module name, e.g. "conv1" or "features.0"
    type: str  # module class name
    output_shape: tuple[int | None, ...] | None  # batch dimension as None; None if never called
    params: int  # own parameters plus BatchNorm running statistics


@dataclass
class ModelSummary:
    rows: list[SummaryRow] = field(default_factory=list)
    total: int = 0
    trainable: int = 0
    non_trainable: int = 0


def _own_counts(module: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) Keras-style counts of a module's own tensors (not its children's)."""
    trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters(recurse=False) if not p.requires_grad)
    stats = sum(buf.numel() for name, buf in module.named_buffers(recurse=False)
                if name in _KERAS_STAT_BUFFERS and buf is not None)
    return trainable, frozen + stats


def keras_param_counts(model: nn.Module) -> tuple[int, int, int]:
    """(total, trainable, non_trainable) as Keras's model.summary() would count them."""
    trainable = non_trainable = 0
    for module in model.modules():
        own_trainable, own_frozen = _own_counts(module)
        trainable += own_trainable
        non_trainable += own_frozen
    return trainable + non_trainable, trainable, non_trainable


def _first_tensor(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((t for t in map(_first_tensor, output) if t is not None), None)
    return None


def summarize(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> ModelSummary:
    """One row per leaf module, in call order, from a forward pass of one all-zero uint8 image.

    The pass runs in eval mode without gradients; every module's train/eval mode is restored after.
    Modules that hold tensors but are never called still get a row (shape None), so rows sum to the total.
    """
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    named = dict(model.named_modules())
    leaves = {name: module for name, module in named.items() if next(module.children(), None) is None}
    rows: list[SummaryRow] = []
    seen: set[str] = set()

    def hook_for(name: str):
        def hook(module: nn.Module, _inputs: object, output: object) -> None:
            tensor = _first_tensor(output)
            shape = None if tensor is None else (None, *tensor.shape[1:])
            params = 0 if name in seen else sum(_own_counts(module))  # a reused module counts once
            seen.add(name)
            rows.append(SummaryRow(name or type(module).__name__, type(module).__name__, shape, params))
        return hook

    modes = {name: module.training for name, module in named.items()}
    handles = [module.register_forward_hook(hook_for(name)) for name, module in leaves.items()]
    try:
        model.eval()
        with torch.no_grad(), single_view(model):
            model(torch.zeros((1, *input_shape), dtype=torch.uint8, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for name, module in named.items():
            module.training = modes[name]
    for name, module in named.items():  # tensors the forward pass did not account for
        count = sum(_own_counts(module))
        if count and name not in seen:
            rows.append(SummaryRow(name or type(module).__name__, type(module).__name__, None, count))
    total, trainable, non_trainable = keras_param_counts(model)
    return ModelSummary(rows, total, trainable, non_trainable)


def _shape_text(shape: tuple[int | None, ...] | None) -> str:
    return "(not called)" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def format_summary(summary: ModelSummary, title: str = "model") -> str:
    """The table as plain text, laid out like Keras's model.summary()."""
    header = ("Layer (type)", "Output Shape", "Param #")
    cells = [(f"{row.name} ({row.type})", _shape_text(row.output_shape), f"{row.params:,}") for row in summary.rows]
    widths = [max(len(header[i]), *(len(cell[i]) for cell in cells)) + 3 if cells else len(header[i]) + 3
              for i in range(3)]
    line_width = sum(widths)

    def line(values: tuple[str, str, str]) -> str:
        return "".join(value.ljust(width) for value, width in zip(values, widths)).rstrip()

    out = [f'Model: "{title}"', "_" * line_width, line(header), "=" * line_width]
    for index, cell in enumerate(cells):
        out.append(line(cell))
        out.append("_" * line_width if index < len(cells) - 1 else "=" * line_width)
    if not cells:
        out.append("=" * line_width)
    out += [
        f"Total params: {summary.total:,}",
        f"Trainable params: {summary.trainable:,}",
        f"Non-trainable params: {summary.non_trainable:,}",
        "_" * line_width,
    ]
    return "\n".join(out)
