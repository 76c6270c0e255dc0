"""The training job's configuration: one dataclass, documented defaults, saved as config.yaml.

Layers, later wins: the defaults below (write-up 000's recipe) < a `--config FILE.yaml` < options
given on the command line. Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fmnist.bounded import read_yaml_file
from fmnist.device import PRECISIONS
from fmnist.engine.augment import AUGMENTS
from fmnist.engine.recipes import FP32_VALUES, RECIPES, recipe_values, trains_in_fp32
from fmnist.errors import DataError, FmnistError
from fmnist.limits import MAX_CONFIG_BYTES, MAX_SEED, MAX_THREADS
from fmnist.runfolder import RunFolder

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "time-decay", "step", "cosine", "onecycle", "linear")
CHECKPOINTS = ("best", "every", "none")
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001}  # SGD: write-up 000; Adam: Keras's default


class ConfigError(FmnistError):
    """A configuration value or file is invalid."""


@dataclass
class TrainConfig:
    model: str | None = "baseline"  # a registered model name (`fmnist models`); None when `spec` is set
    spec: dict | None = None  # a CNN spec (write-up 002's dict), normalised; replaces `model`
    model_options: dict[str, Any] = field(default_factory=dict)  # more factory arguments, e.g. {tta: false} for fast
    epochs: int = 10  # write-up 000 trains 10 epochs
    batch_size: int = 32  # Keras's default batch size, used by 000 and 001
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float | None = None  # None: 0.01 for SGD (write-up 000), 0.001 for Adam/AdamW (Keras default)
    momentum: float = 0.9  # SGD momentum (000 and 001 use 0.9)
    nesterov: bool = False
    weight_decay: float = 0.0  # L2 for SGD/Adam, decoupled for AdamW
    schedule: str = "constant"  # constant | time-decay | step | cosine | onecycle (per-step learning rate)
    decay: float | None = None  # time-decay: lr / (1 + decay * step), Keras's legacy `decay`; None: lr / epochs (001)
    step_epochs: int = 10  # step schedule: multiply the rate by step_gamma every step_epochs epochs
    step_gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear schedule: rise from 0 over this many epochs, then fall linearly to 0
    label_smoothing: float = 0.0
    augment: str = "none"  # none | flip | crop | flip+crop | flip+crop+erase, per batch on the device
    crop_pad: int = 2  # crop: translate by up to this many pixels
    val: str = "test"  # test | split:FRACTION | balanced:N_PER_CLASS (held out of the training set)
    seed: int = 1  # seeds weights, shuffling, dropout and hold-out splits; same seed on CPU = same run
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16: autocast for the forward pass; auto = bf16 where native (device.py)
    threads: int = 0  # torch's intra-op CPU threads; 0 = automatic (device.py: resolve_threads)
    limit: int | None = None  # train on the first N training images only (smoke runs)
    checkpoint: str = "best"  # best: keep the best-val_accuracy weights; every: one file per epoch; none
    early_stop: int | None = None  # stop after this many epochs without a better val_accuracy
    data: str | None = None  # data directory (see `fmnist data`); None: the normal search path
    eval_batch_size: int = 1000  # batch size for validation and test passes (no gradients, bigger is faster)
    recipe: str | None = None  # the named recipe these values started from (fmnist.engine.recipes), if any
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the run (e.g. write-up)

    def __post_init__(self) -> None:
        if self.data is not None:
            self.data = str(self.data)  # a Path from the API; config.yaml stores plain strings
        self.validate()

    @property
    def model_name(self) -> str:
        return self.model if self.spec is None else "spec"

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def validate(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ConfigError(message)

        need(self.optimizer in OPTIMIZERS, f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.schedule in SCHEDULES, f"schedule: expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(self.checkpoint in CHECKPOINTS, f"checkpoint: expected one of {', '.join(CHECKPOINTS)}, got {self.checkpoint!r}")
        need(self.precision in PRECISIONS, f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        need(self.recipe is None or self.recipe in RECIPES,
             f"recipe: expected one of {', '.join(RECIPES)}, got {self.recipe!r}")
        need(self.augment in AUGMENTS, f"augment: expected one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        need(_whole(self.crop_pad) and 1 <= self.crop_pad <= 8,
             f"crop_pad: must be 1-8 pixels, got {self.crop_pad!r}")
        need(_whole(self.epochs) and self.epochs >= 1, f"epochs: must be a positive integer, got {self.epochs!r}")
        need(isinstance(self.warmup_epochs, (int, float)) and not isinstance(self.warmup_epochs, bool)
             and self.warmup_epochs >= 0, f"warmup_epochs: must be a number >= 0, got {self.warmup_epochs!r}")
        # Only the linear schedule warms up; a recipe's warm-up is then ignored by another --schedule.
        need(self.schedule != "linear" or self.warmup_epochs < self.epochs,
             f"warmup_epochs: must be below epochs ({self.epochs}) for the linear schedule, got {self.warmup_epochs!r}; "
             "give --warmup-epochs a smaller value")
        need(_whole(self.batch_size) and self.batch_size >= 1, f"batch_size: must be a positive integer, got {self.batch_size!r}")
        need(_whole(self.eval_batch_size) and self.eval_batch_size >= 1,
             f"eval_batch_size: must be a positive integer, got {self.eval_batch_size!r}")
        # scikit-learn's splitters (the folds, the hold-outs) take seeds below 2**32; cv adds the fold number
        need(_whole(self.seed) and 0 <= self.seed <= MAX_SEED,
             f"seed: must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        need(_whole(self.threads) and 0 <= self.threads <= MAX_THREADS,
             f"threads: must be 0 (automatic) or a number of threads from 1 to {MAX_THREADS}, got {self.threads!r}")
        for name in ("lr", "momentum", "weight_decay", "label_smoothing", "decay", "step_gamma"):
            value = getattr(self, name)
            need(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)),
                 f"{name}: must be a number, got {value!r}")
        need(self.lr is None or self.lr > 0, f"lr: must be positive, got {self.lr}")
        need(0.0 <= self.momentum < 1.0, f"momentum: must be in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"weight_decay: must be >= 0, got {self.weight_decay}")
        need(0.0 <= self.label_smoothing < 1.0, f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")
        need(self.limit is None or (_whole(self.limit) and self.limit >= 10),
             f"limit: must be a whole number of images, at least 10, got {self.limit!r}")
        need(self.early_stop is None or (_whole(self.early_stop) and self.early_stop >= 1),
             f"early_stop: patience must be a whole number of epochs >= 1, got {self.early_stop!r}")
        need(_whole(self.step_epochs) and self.step_epochs >= 1 and 0 < self.step_gamma <= 1,
             "step_epochs must be a whole number >= 1 and step_gamma in (0, 1]")
        need(self.decay is None or self.decay >= 0, f"decay: must be >= 0, got {self.decay}")
        need((self.model is None) != (self.spec is None), "give exactly one of model and spec")
        need(isinstance(self.model_options, dict) and all(isinstance(k, str) for k in self.model_options),
             f"model_options: must be a mapping of argument: value, got {self.model_options!r}")
        need(not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0),
             "nesterov: needs the sgd optimizer and a momentum above 0")
        parse_val(self.val)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_val(val: str) -> tuple[str, float | int | None]:
    """`test` → ("test", None); `split:0.2` → ("split", 0.2); `balanced:1000` → ("balanced", 1000)."""
    if val == "test":
        return "test", None
    match = re.fullmatch(r"(split|balanced):([0-9.]+)", val or "")
    if match:
        kind, number = match.groups()
        try:
            value = float(number) if kind == "split" else int(number)
        except ValueError:
            value = None
        if kind == "split" and value is not None and 0 < value < 1:
            return kind, value
        if kind == "balanced" and value is not None and value >= 1:
            return kind, value
    raise ConfigError(f"val: expected test, split:FRACTION (0 < FRACTION < 1) or balanced:N_PER_CLASS, got {val!r}")


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def config_from_dict(values: dict, origin: str = "config") -> TrainConfig:
    """Build a config; unknown keys and wrong values are errors naming `origin`."""
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"{origin}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(FIELDS))})")
    values = {key: _number(key, value) for key, value in values.items()}
    if values.get("spec") is not None and "model" not in values:
        values["model"] = None
    try:
        return TrainConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _whole(value: Any) -> bool:
    """An integer, not a bool (True is an int to Python) nor a float that happens to be whole (1e3)."""
    return isinstance(value, int) and not isinstance(value, bool)


FLOAT_FIELDS = ("lr", "momentum", "weight_decay", "label_smoothing", "decay", "step_gamma", "warmup_epochs")


def _number(key: str, value: Any) -> Any:
    """YAML 1.1 reads `1e-3` as a string; a float field takes it as the number it spells."""
    if key in FLOAT_FIELDS and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: must be a number, got {value!r}") from None
    return value


def load_config_file(path: str | Path) -> dict:
    """The key/value pairs of a YAML config file (validated later, when merged): a `--config` file
    or a run folder's config.yaml. The one place fmnist reads YAML configs."""
    try:
        values = read_yaml_file(path, MAX_CONFIG_BYTES, "a YAML config file")
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    if values is None:
        return {}
    return checked_options(values, str(path))


def checked_options(values, where: str) -> dict:
    """`values` read from a file as TrainConfig options: a mapping of known keys (`-` read as `_`)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of option: value")
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    return values


def build_config(file: str | Path | None = None, *, under: dict | None = None, **overrides: Any) -> TrainConfig:
    """Defaults < a recipe (`recipe`, from any layer) < `under` (values another file set, e.g. a
    search space's `fixed:`) < `file` < overrides whose value is not None."""
    from_file: dict = load_config_file(file) if file else {}
    under = under or {}
    given = {key: value for key, value in overrides.items() if value is not None}
    layers = (under, from_file, given)
    name = given.get("recipe", from_file.get("recipe", under.get("recipe")))
    origin = str(file) if file else "options"
    config = _layered(recipe_values(name) if name else {}, layers, origin)  # checked first: a refused option costs no torch
    if (name in FP32_VALUES and not any(layer.get("model") is not None or layer.get("spec") is not None for layer in layers)
            and trains_in_fp32(config.precision, config.device)):
        # The run will train in fp32: the recipe's fp32 values (recipes.py). They come as a set, chosen for their
        # model: a model or spec of the user's keeps the recipe's own values around it.
        config = _layered(recipe_values(name, fp32=True), layers, origin)
    if config.spec is None or config.model_options:  # fail now, not after other models of a `cv` have trained
        from fmnist import models  # here, not at the top: the models import torch, option parsing must not

        if config.model is not None:
            models.describe(config.model)  # an unknown name: one line with the known ones
        try:
            if config.model is None:
                raise FmnistError("they apply to registered models, not to a spec")
            models.architecture_for(name=config.model, options=config.model_options)
        except FmnistError as exc:
            raise ConfigError(f"{origin}: model_options: {exc}") from None
    return config


def _layered(recipe: dict, layers: tuple[dict, ...], origin: str) -> TrainConfig:
    """The config of `recipe`'s values under `layers` (lowest first), checked."""
    values: dict = {}
    for layer in (recipe, *layers):
        _layer(values, layer)
    epochs = values.get("epochs")
    if ("warmup_epochs" in recipe and not any("warmup_epochs" in layer for layer in layers)
            and isinstance(epochs, int) and not isinstance(epochs, bool) and epochs != recipe["epochs"]):
        # The recipe's warm-up is a share of its own length (fast: 1 of 8 epochs); a run of another
        # length keeps the share, so `--recipe fast --epochs 1` warms up for the first 1/8 of its epoch.
        values["warmup_epochs"] = recipe["warmup_epochs"] * epochs / recipe["epochs"]
    return config_from_dict(values, origin=origin)


def _layer(values: dict, top: dict) -> None:
    """Put `top` over `values`; a model in one layer replaces a spec below it, and the reverse."""
    if top.get("spec") is not None:
        values["model"] = None
    if top.get("model") is not None:
        values.pop("spec", None)
    values.update(top)


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def load_run_config(folder: str | Path) -> TrainConfig:
    """The config a run folder was trained with (for --resume)."""
    run = RunFolder(folder)
    if not run.config.is_file():
        raise FmnistError(f"{folder}: not a run folder (no config.yaml)")
    return config_from_dict(load_config_file(run.config), origin=str(run.config))
