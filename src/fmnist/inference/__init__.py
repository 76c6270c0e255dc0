"""Predict with a saved model: image files, PIL images or uint8 arrays → one record per input.

    import fmnist
    fmnist.predict("runs/b/model.safetensors", ["shirt.jpg", "photos/"])   # files and directories
    fmnist.predict(loaded_model_file, test_images[:100])                     # uint8 (N, 28, 28), as they are

    inputs.py      what can be predicted, expanded into items and prepared (fmnist.images)
    runtimes.py    Predictor: PyTorch for .safetensors, onnxruntime for .onnx (then torch is never imported)
    torch_model.py the PyTorch model rewritten for inference (imported by the PyTorch runtime only)
    predict.py     predict() / iter_predictions(): chunks of inputs through a Predictor
    records.py     Prediction, the printed line, the --show-input file names
"""

from fmnist.inference.inputs import CHUNK, expand_inputs
from fmnist.inference.predict import MIRROR_CHOICES, iter_predictions, predict
from fmnist.inference.records import STDIN, Prediction, format_error, format_line, input_names
from fmnist.inference.runtimes import (
    ONNX_FORMAT,
    ONNX_INPUT,
    ONNX_LOGITS,
    ONNX_PROBABILITIES,
    OnnxPredictor,
    Predictor,
    TorchPredictor,
    load_predictor,
    softmax,
)

__all__ = [
    "CHUNK",
    "MIRROR_CHOICES",
    "ONNX_FORMAT",
    "ONNX_INPUT",
    "ONNX_LOGITS",
    "ONNX_PROBABILITIES",
    "STDIN",
    "OnnxPredictor",
    "Prediction",
    "Predictor",
    "TorchPredictor",
    "expand_inputs",
    "format_error",
    "format_line",
    "input_names",
    "iter_predictions",
    "load_predictor",
    "predict",
    "softmax",
]
