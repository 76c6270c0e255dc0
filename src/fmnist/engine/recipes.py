"""Named training recipes (`fmnist train --recipe NAME`): config values measured to work together.

A recipe sits between the defaults and a config file: defaults < recipe < --config FILE < options,
so `fmnist train --recipe fast --epochs 12` changes only the epochs. The write-ups' own recipes are
the YAML files in configs/.

A recipe may also carry values for machines that train it in fp32 (FP32_VALUES): `--precision auto`
trains in bf16 only where the hardware computes it natively (device.py), and a model sized for bf16
is the wrong trade where every multiply costs an fp32 one. Which set applies follows the precision
the run will use: the layers' own `precision` and `device` (or the recipe's), resolved on this
machine. The fp32 set is one piece, chosen for its model: where a layer above the recipe names a
model or a spec, the recipe's own values stay. It says `precision: fp32` itself, so the run's
config.yaml records what was chosen, and a resume or a rerun elsewhere trains the same way.
"""

from __future__ import annotations

from fmnist.errors import FmnistError

RECIPES: dict[str, dict] = {
    # The most test accuracy per CPU second found on this project's 2-core machine (benchmarks/
    # fast_recipe.py has the ablations; benchmarks/README.md the table): fmnist's `fast` net, large-batch
    # Nesterov SGD with a linear warm-up and linear decay to zero, label smoothing, random horizontal
    # flips and flip test-time augmentation (in the model). Translation (crop) hurt at 8 epochs.
    "fast": {
        "model": "fast",
        "epochs": 8,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "schedule": "linear",
        "warmup_epochs": 1.0,
        "label_smoothing": 0.1,
        "augment": "flip",
        "precision": "auto",
    },
}

FP32_VALUES: dict[str, dict] = {
    # In fp32 (AVX2-only and ARM CPUs, GPUs without bf16) the `fast` net sits near the fp32 roofline (76 % of
    # a 2-core EPYC's sgemm peak, held to AVX2), so the way to 93 % sooner is fewer FLOPs for nearly the same
    # accuracy: `fast-narrow` does 0.46x of its multiplies (10.0 against 21.9 MFLOP per image) and, at twice the
    # learning rate, reached 93 % within the 8 epochs on 6 of 6 seeds held to AVX2, after 92 s against `fast`'s
    # 132-158 s, ending at 93.28 % against 93.55-93.69 % (benchmarks/README.md, "The fast recipe in fp32").
    "fast": {"model": "fast-narrow", "lr": 0.2, "precision": "fp32"},
}


def recipe_values(name: str, fp32: bool = False) -> dict:
    """The config values of recipe `name` (a copy), with `recipe` set to the name; `fp32`: for a run that
    trains in fp32 (the recipe's FP32_VALUES over its own)."""
    if name not in RECIPES:
        raise FmnistError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES) or 'none'}")
    return {**RECIPES[name], **(FP32_VALUES.get(name, {}) if fp32 else {}), "recipe": name}


def trains_in_fp32(precision: object, device: object) -> bool:
    """Whether a run with these `precision` and `device` values trains in fp32 on this machine. A value
    that does not resolve (a typo, `--device cuda` without a GPU) counts as no: the config's own checks
    and the trainer's set-up name it."""
    from fmnist.device import resolve_device, resolve_precision  # torch on first use: recipes are read while parsing

    if not isinstance(precision, str) or not isinstance(device, str):
        return False
    try:
        return resolve_precision(precision, resolve_device(device)) is None
    except Exception:  # noqa: BLE001  (FmnistError, or torch's own error for a GPU index that is not there)
        return False
