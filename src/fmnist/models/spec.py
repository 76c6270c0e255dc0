"""A CNN built from write-up 002's parameter dictionary (FashionMNISTCNN), given as a dict, YAML or JSON.

Format (002's, merged into one mapping):

    conv0: {conv0_pad: 1, conv0_channels: 32, conv0_filter: 3, conv0_stride: 1, conv0_pool: 1, conv0_activation: relu}
    ...                                  # conv0..convN, numbered without gaps (N may be -1: no conv)
    fc0: {fc0_neurons: 512, fc0_activation: relu}
    ...                                  # fc0..fcM, at least one; the last one is the output layer
    dropout: 0.0                         # optional, used by every fc block (002's default model: 0)

Inside a block the short keys (`pad`, `channels`, `filter`, `stride`, `pool`, `activation`,
`neurons`) are accepted too; `validate_spec` returns the long form, which is what a model file stores.

Blocks, exactly as 002 builds them:
    conv block = ZeroPadding2D(pad) → Conv2D(channels, filter, stride) → BatchNorm → Activation → MaxPool(pool)
    fc block   = BatchNorm → Dropout → Dense(neurons) + Activation
A pool of 1 is an identity but stays in the model, like 002's conv0_pool. The last fc block's
softmax is not built: models return logits and the loss applies the softmax.

The last fc block's neurons must equal the model's number of classes; `build_from_spec` refuses a
mismatch rather than silently resizing the output layer (the registered `fmnistcnn` factory sets it
from `num_classes` explicitly). A spec's size is bounded (MAX_PARAMETERS, MAX_ACTIVATION_BYTES, below):
`validate_spec` counts both by arithmetic and refuses a spec over either before anything is built.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from fmnist.bounded import BoundsError, brief, parse_json, parse_yaml, read_text_file
from fmnist.errors import DataError, FmnistError
from fmnist.limits import MAX_ACTIVATION_BYTES, MAX_BLOCKS, MAX_INTEGER, MAX_PARAMETERS, MAX_SPEC_BYTES
from fmnist.models.layers import (ACTIVATIONS, Dropout, Flatten, Rescale, activation, batch_norm1d, batch_norm2d,
                                  conv2d, dense)

INPUT_SIZE = 28  # images are 28x28; the shrink check and the first Dense layer's width follow from it
CONV_FIELDS = ("pad", "channels", "filter", "stride", "pool", "activation")
FC_FIELDS = ("neurons", "activation")
KNOWN_ACTIVATIONS = tuple(sorted([*ACTIVATIONS, "softmax"]))
_BLOCK_KEY = re.compile(r"(conv|fc)(0|[1-9][0-9]{0,5})")  # conv0..conv999999: int() of it stays cheap



class SpecError(FmnistError):
    """A CNN spec is malformed; the message names the key or block at fault."""


# Write-up 002's default FashionMNISTCNN: 3 conv blocks, 2 hidden fc layers, softmax output, no dropout.
DEFAULT_SPEC: dict[str, Any] = {
    "conv0": {"conv0_pad": 1, "conv0_channels": 32, "conv0_filter": 3, "conv0_stride": 1, "conv0_pool": 1,
              "conv0_activation": "relu"},
    "conv1": {"conv1_pad": 1, "conv1_channels": 64, "conv1_filter": 3, "conv1_stride": 1, "conv1_pool": 2,
              "conv1_activation": "relu"},
    "conv2": {"conv2_pad": 1, "conv2_channels": 128, "conv2_filter": 3, "conv2_stride": 1, "conv2_pool": 2,
              "conv2_activation": "relu"},
    "fc0": {"fc0_neurons": 512, "fc0_activation": "relu"},
    "fc1": {"fc1_neurons": 256, "fc1_activation": "relu"},
    "fc2": {"fc2_neurons": 10, "fc2_activation": "softmax"},
    "dropout": 0.0,
}


def conv_output_size(size: int, pad: int, filter_size: int, stride: int) -> int:
    """Side of a square feature map after ZeroPadding(pad) + a 'valid' Conv2D(filter, stride)."""
    return (size + 2 * pad - filter_size) // stride + 1


def _block_fields(name: str, block: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """A block's values by short field name; accepts `conv0_pad` and `pad` but not both."""
    if not isinstance(block, Mapping):
        raise SpecError(f"{name}: expected a mapping of {', '.join(f'{name}_{f}' for f in fields)}, "
                        f"got {type(block).__name__}")
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in block.items():
        field = key if key in fields else None
        if field is None and isinstance(key, str) and key.startswith(f"{name}_") and key[len(name) + 1:] in fields:
            field = key[len(name) + 1:]
        if field is None:
            raise SpecError(f"{name}: unknown key {brief(key)} (expected {', '.join(f'{name}_{f}' for f in fields)}, "
                            f"or the short form {', '.join(fields)})")
        if field in values:
            raise SpecError(f"{name}: {name}_{field} is given twice (as {brief(given_as[field])} and {brief(key)})")
        values[field], given_as[field] = value, key
    for field in fields:
        if field not in values:
            raise SpecError(f"{name}: missing key '{name}_{field}'")
    return values


def _check_int(name: str, field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{name}: {name}_{field} must be an integer, got {brief(value)}")
    if value < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise SpecError(f"{name}: {name}_{field} must be {bound}, got {brief(value)}")
    if value > MAX_INTEGER:
        raise SpecError(f"{name}: {name}_{field} must be at most {MAX_INTEGER:,}, got {brief(value)}")
    return value


def _check_activation(name: str, value: Any, last_fc: bool) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{name}: {name}_activation must be a string, got {brief(value)}")
    act = value.strip().lower()
    if act not in KNOWN_ACTIVATIONS:
        raise SpecError(f"{name}: unknown activation {brief(value)} in {name}_activation (known: {', '.join(KNOWN_ACTIVATIONS)})")
    if act == "softmax" and not last_fc:
        raise SpecError(f"{name}: {name}_activation 'softmax' is only allowed in the last fc block")
    if last_fc and act not in ("softmax", "linear"):
        # The last block's output goes to a softmax cross-entropy; anything else would distort the logits.
        raise SpecError(f"{name}: the last fc block outputs logits, so {name}_activation must be 'softmax' "
                        f"or 'linear', not {brief(value)}")
    return act


def _check_dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise SpecError(f"dropout must be a number in [0, 1), got {brief(value)}")
    return float(value)


def _numbered_blocks(spec: Mapping) -> tuple[dict[str, list[tuple[int, Any]]], float]:
    """Split the top level into conv / fc blocks (checked to be numbered 0..N) and the dropout rate."""
    blocks: dict[str, dict[int, Any]] = {"conv": {}, "fc": {}}
    dropout = 0.0
    for key, value in spec.items():
        if key == "dropout":
            dropout = _check_dropout(value)
            continue
        match = _BLOCK_KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise SpecError(f"unknown top-level key {brief(key)} (expected conv0..convN, fc0..fcM, dropout)")
        blocks[match[1]][int(match[2])] = value
    if len(blocks["conv"]) + len(blocks["fc"]) > MAX_BLOCKS:
        raise SpecError(f"{len(blocks['conv']) + len(blocks['fc']):,} blocks, more than the limit of {MAX_BLOCKS}")
    for kind, numbered in blocks.items():
        for expected, index in enumerate(sorted(numbered)):
            if index != expected:
                found = ", ".join(f"{kind}{i}" for i in sorted(numbered))
                raise SpecError(f"{kind}{expected} is missing: {kind} blocks must be numbered {kind}0..{kind}N "
                                f"without gaps (found {found})")
    if not blocks["fc"]:
        raise SpecError("no fc block: a spec needs at least fc0 (the output layer)")
    return {kind: sorted(numbered.items()) for kind, numbered in blocks.items()}, dropout


def validate_spec(spec: Any) -> dict[str, Any]:
    """Check a spec and return it normalised: long keys, lower-case activations, explicit dropout.

    The result is plain JSON (ints, strings, one float), ordered conv0.., fc0.., dropout. A spec over
    MAX_PARAMETERS or MAX_ACTIVATION_BYTES is refused here, before anything is built.
    """
    normalised, footprint = _normalise(spec)
    _check_footprint(footprint)
    return normalised


def spec_footprint(spec: Any) -> tuple[int, int]:
    """(parameters, activation bytes per image) of a spec's model, by arithmetic (nothing is built),
    whether or not it is within the bounds. Parameters are counted as Keras counts them (BatchNorm's
    running statistics included); activations are every layer's float32 output, as training keeps them."""
    _, footprint = _normalise(spec)
    return sum(params for params, _ in footprint.values()), sum(acts for _, acts in footprint.values())


def _normalise(spec: Any) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    """The normalised spec and, per block, its (parameters, activation bytes per image)."""
    if not isinstance(spec, Mapping):
        raise SpecError(f"spec: expected a mapping of blocks (conv0.., fc0.., dropout), got {type(spec).__name__}")
    blocks, dropout = _numbered_blocks(spec)
    normalised: dict[str, Any] = {}
    size, channels = INPUT_SIZE, 1
    # Per block: Keras-counted parameters and the float32 activations of one image (every layer's output).
    footprint: dict[str, tuple[int, int]] = {"input": (0, 4 * INPUT_SIZE * INPUT_SIZE)}
    for index, block in blocks["conv"]:
        name = f"conv{index}"
        fields = _block_fields(name, block, CONV_FIELDS)
        for field in ("channels", "filter", "stride", "pool"):
            _check_int(name, field, fields[field], minimum=1)
        _check_int(name, "pad", fields["pad"], minimum=0)
        fields["activation"] = _check_activation(name, fields["activation"], last_fc=False)
        pad, filter_size, stride, pool, width = (fields[f] for f in ("pad", "filter", "stride", "pool", "channels"))
        conv_size = conv_output_size(size, pad, filter_size, stride)
        if conv_size < 1:
            side = max(conv_size, 0)
            raise SpecError(f"{name}: feature map shrinks to {side}x{side} "
                            f"(input {size}x{size}, filter {filter_size}, pad {pad}, stride {stride})")
        pooled = conv_size // pool  # MaxPool2D(pool), 'valid': floor
        if pooled < 1:
            raise SpecError(f"{name}: feature map shrinks to 0x0 at the pool (input {conv_size}x{conv_size}, pool {pool})")
        # conv weights and bias, BatchNorm's 4 vectors; outputs of pad, conv, BatchNorm, activation, pool
        footprint[name] = (width * (channels * filter_size**2 + 5),
                           4 * (channels * (size + 2 * pad) ** 2 + 3 * width * conv_size**2 + width * pooled**2))
        size, channels = pooled, width
        normalised[name] = {f"{name}_{field}": fields[field] for field in CONV_FIELDS}
    last = len(blocks["fc"]) - 1
    features = channels * size * size
    footprint["flatten"] = (0, 4 * features)
    for index, block in blocks["fc"]:
        name = f"fc{index}"
        fields = _block_fields(name, block, FC_FIELDS)
        neurons = _check_int(name, "neurons", fields["neurons"], minimum=1)
        fields["activation"] = _check_activation(name, fields["activation"], last_fc=index == last)
        # BatchNorm's 4 vectors, dense weights and bias; outputs of BatchNorm, dropout, dense, activation
        outputs = 2 * features + neurons * (1 if index == last and fields["activation"] == "softmax" else 2)
        footprint[name] = (features * (neurons + 4) + neurons, 4 * outputs)
        features = neurons
        normalised[name] = {f"{name}_{field}": fields[field] for field in FC_FIELDS}
    normalised["dropout"] = dropout
    return normalised, footprint


def _check_footprint(footprint: dict[str, tuple[int, int]]) -> None:
    """Refuse a spec over MAX_PARAMETERS or MAX_ACTIVATION_BYTES, naming the largest block."""
    parameters = sum(params for params, _ in footprint.values())
    activations = sum(acts for _, acts in footprint.values())
    if parameters > MAX_PARAMETERS:
        block = max(footprint, key=lambda name: footprint[name][0])
        raise SpecError(f"spec: {parameters:,} parameters, more than the limit of {MAX_PARAMETERS:,} "
                        f"({block} alone has {footprint[block][0]:,})")
    if activations > MAX_ACTIVATION_BYTES:
        block = max(footprint, key=lambda name: footprint[name][1])
        raise SpecError(f"spec: the activations of one image take {activations / 2**20:,.0f} MiB, more than the "
                        f"limit of {MAX_ACTIVATION_BYTES // 2**20} MiB ({block} alone: {footprint[block][1] / 2**20:,.0f} MiB)")


def _last_fc(spec: Mapping) -> str:
    """Name of a validated spec's output block."""
    return f"fc{max(int(key[2:]) for key in spec if key.startswith('fc'))}"


def spec_num_classes(spec: Mapping) -> int:
    """The output width a (validated) spec declares: its last fc block's neurons."""
    last = _last_fc(spec)
    return spec[last][f"{last}_neurons"]


def with_num_classes(spec: Any, num_classes: int) -> dict[str, Any]:
    """A validated copy of `spec` whose output layer has `num_classes` neurons."""
    spec = copy.deepcopy(validate_spec(spec))
    last = _last_fc(spec)
    spec[last][f"{last}_neurons"] = num_classes
    return spec


def build_from_spec(spec: Any, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """The CNN a spec describes, as an nn.Sequential named like 002's Keras summary (conv0_pad, conv0, ...)."""
    spec = validate_spec(spec)
    outputs = spec_num_classes(spec)
    if outputs != num_classes:
        last = _last_fc(spec)
        raise SpecError(f"{last}: {last}_neurons is {outputs} but the model needs {num_classes} outputs "
                        "(one per class)")
    layers: OrderedDict[str, nn.Module] = OrderedDict(rescale=Rescale())  # (N, C, 28, 28) float in [0, 1]
    channels, size = in_channels, INPUT_SIZE
    for name, block in spec.items():
        if not name.startswith("conv"):
            continue
        pad, out_channels, filter_size, stride, pool, act = (block[f"{name}_{f}"] for f in CONV_FIELDS)
        layers[f"{name}_pad"] = nn.ZeroPad2d(pad)  # (N, C, size + 2 pad, size + 2 pad)
        layers[name] = conv2d(channels, out_channels, filter_size, stride=stride)
        layers[f"{name}_bn"] = batch_norm2d(out_channels)
        layers[f"{name}_act"] = activation(act)
        layers[f"{name}_pool"] = nn.MaxPool2d(pool)  # pool 1 is an identity, kept as in 002
        channels, size = out_channels, conv_output_size(size, pad, filter_size, stride) // pool
    layers["flatten"] = Flatten()  # (N, channels * size * size), NCHW order
    features = channels * size * size
    fc_names = [name for name in spec if name.startswith("fc")]
    for name in fc_names:
        neurons, act = spec[name][f"{name}_neurons"], spec[name][f"{name}_activation"]
        layers[f"{name}_bn"] = batch_norm1d(features)
        layers[f"{name}_drop"] = Dropout(spec["dropout"])
        layers[name] = dense(features, neurons)
        if not (name == fc_names[-1] and act == "softmax"):  # the final softmax lives in the loss
            layers[f"{name}_act"] = activation(act)
        features = neurons
    return nn.Sequential(layers)  # (N, num_classes) logits


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read and validate a spec file: JSON for `.json`, YAML for `.yaml`/`.yml`, else whichever parses.
    Its size and nesting depth are checked before it is parsed (fmnist.bounded)."""
    path = Path(path)
    try:
        text = read_text_file(path, MAX_SPEC_BYTES, "a spec file (YAML or JSON)")
    except DataError as exc:
        raise SpecError(str(exc)) from None
    suffix = path.suffix.lower()
    parsers = {".json": [parse_json], ".yaml": [parse_yaml], ".yml": [parse_yaml]}.get(suffix, [parse_json, parse_yaml])
    for parse in parsers:
        try:
            data = parse(text, MAX_SPEC_BYTES)
            break
        except BoundsError as exc:
            error = exc
    else:
        raise SpecError(f"{path}: {error}")
    try:
        return validate_spec(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
