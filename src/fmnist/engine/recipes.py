"""Named training recipes (`fmnist train --recipe NAME`): config values measured to work together.

A recipe sits between the defaults and a config file: defaults < recipe < --config FILE < options,
so `fmnist train --recipe fast --epochs 12` changes only the epochs. The write-ups' own recipes are
the YAML files in configs/.
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


def recipe_values(name: str) -> dict:
    """The config values of recipe `name` (a copy), with `recipe` set to the name."""
    if name not in RECIPES:
        raise FmnistError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES) or 'none'}")
    return {**RECIPES[name], "recipe": name}
