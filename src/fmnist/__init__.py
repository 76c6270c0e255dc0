"""fmnist: train, evaluate and use CNNs on Fashion-MNIST and any MNIST-like data."""

from fmnist.data.dataset import FASHION_CLASSES, Dataset, Split, load_dataset
from fmnist.errors import DataError, FmnistError

__version__ = "0.1.0"

__all__ = [
    "FASHION_CLASSES",
    "DataError",
    "Dataset",
    "FmnistError",
    "Split",
    "__version__",
    "load_dataset",
]
