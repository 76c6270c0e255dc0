"""fmnist: train, evaluate and use CNNs on Fashion-MNIST and any MNIST-like data.

The data layer imports quickly; everything that needs torch is loaded on first use, so
`import fmnist` and commands like `fmnist data` stay fast.
"""

import importlib

from fmnist import runtime

# Before anything imports torch: how OpenMP's workers wait (libgomp reads it once, when torch loads it). Only
# speed changes; a setting the user made wins. runtime.py says why and what was measured.
runtime.apply()

from fmnist.data.dataset import FASHION_CLASSES, Dataset, Split, load_dataset
from fmnist.errors import DataError, FmnistError

__version__ = "0.1.0"

# name → (module, attribute), imported on first access (PEP 562).
_LAZY = {
    "TrainConfig": ("fmnist.engine.config", "TrainConfig"),
    "build_config": ("fmnist.engine.config", "build_config"),
    "train": ("fmnist.workflows.train_run", "train"),
    "cross_validate": ("fmnist.workflows.crossval", "cross_validate"),
    "tune": ("fmnist.workflows.tune", "tune"),
    "evaluate": ("fmnist.workflows.evaluate_file", "evaluate_file"),
    "find_lr": ("fmnist.workflows.lr_find", "find_lr"),
    "load_model": ("fmnist.modelfile", "load_model"),
    "save_model": ("fmnist.modelfile", "save_model"),
    "ModelFile": ("fmnist.modelfile", "ModelFile"),
    "models": ("fmnist.models", None),
    "predict": ("fmnist.inference", "predict"),
    "load_predictor": ("fmnist.inference", "load_predictor"),
    "Prediction": ("fmnist.inference", "Prediction"),
    "export_onnx": ("fmnist.export", "export_onnx"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'fmnist' has no attribute {name!r}")

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


__all__ = [
    "FASHION_CLASSES",
    "DataError",
    "Dataset",
    "FmnistError",
    "ModelFile",
    "Prediction",
    "Split",
    "TrainConfig",
    "__version__",
    "build_config",
    "cross_validate",
    "evaluate",
    "export_onnx",
    "find_lr",
    "load_dataset",
    "load_model",
    "load_predictor",
    "models",
    "predict",
    "save_model",
    "train",
    "tune",
]
