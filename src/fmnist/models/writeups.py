"""The write-ups' Keras architectures, layer for layer, in PyTorch.

Each factory mirrors one `Sequential` from /work/shared/seeds (000..004) with Keras's initialisers
and BatchNorm settings (see layers.py), so parameter counts match the write-ups' `model.summary()`.
Differences that are deliberate: Keras's fused `activation=` becomes its own module; the final softmax
is left to the loss (models return logits); the first module rescales raw pixels (Rescale).
Shapes in comments are (N, C, H, W) for a 28x28 input.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from fmnist.models.layers import Dropout, Flatten, Rescale, batch_norm1d, batch_norm2d, conv2d, dense
from fmnist.models.registry import register
from fmnist.models.spec import DEFAULT_SPEC, build_from_spec, with_num_classes


@register("baseline", "000 baseline CNN: Conv(32, 3x3, he_uniform) → MaxPool 2 → Dense 100 (he_uniform) → "
                      "classes")
def baseline(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Write-up 000's define_model() (also 003's cnn_categorical_model)."""
    return nn.Sequential(OrderedDict(
        rescale=Rescale(),
        conv1=conv2d(in_channels, 32, 3, init="he_uniform"),  # (N, 32, 26, 26)
        conv1_relu=nn.ReLU(),
        pool1=nn.MaxPool2d(2),  # (N, 32, 13, 13)
        flatten=Flatten(),  # (N, 5408)
        dense1=dense(32 * 13 * 13, 100, init="he_uniform"),  # (N, 100)
        dense1_relu=nn.ReLU(),
        dense2=dense(100, num_classes),  # (N, classes) logits
    ))


@register("dense", "003 simple dense model: Flatten → Dense 128 → classes")
def dense_model(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Write-up 003's simple_dense_model(): no convolutions, a reference point for the CNNs."""
    return nn.Sequential(OrderedDict(
        rescale=Rescale(),
        flatten=Flatten(),  # (N, 784)
        dense1=dense(in_channels * 28 * 28, 128),  # (N, 128)
        dense1_relu=nn.ReLU(),
        dense2=dense(128, num_classes),  # (N, classes) logits
    ))


@register("conv64x2", "003 coursera CNN: 2 x [Conv(64, 3x3) → MaxPool 2] → Dense 128 → classes")
def conv64x2(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Write-up 003's cnn_sparse_categorical_model(): two 64-filter 'valid' convolutions."""
    return nn.Sequential(OrderedDict(
        rescale=Rescale(),
        conv1=conv2d(in_channels, 64, 3),  # (N, 64, 26, 26)
        conv1_relu=nn.ReLU(),
        pool1=nn.MaxPool2d(2),  # (N, 64, 13, 13)
        conv2=conv2d(64, 64, 3),  # (N, 64, 11, 11)
        conv2_relu=nn.ReLU(),
        pool2=nn.MaxPool2d(2),  # (N, 64, 5, 5)
        flatten=Flatten(),  # (N, 1600)
        dense1=dense(64 * 5 * 5, 128),  # (N, 128)
        dense1_relu=nn.ReLU(),
        dense2=dense(128, num_classes),  # (N, classes) logits
    ))


def _conv3(num_classes: int, in_channels: int, dropout: tuple[float, float, float, float] | None) -> nn.Module:
    """Write-up 004's model; with `dropout`, the rates after pool1, pool2, conv3 and dense1."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(rescale=Rescale())
    layers["conv1"] = conv2d(in_channels, 32, 3, init="he_normal")  # (N, 32, 26, 26)
    layers["conv1_relu"] = nn.ReLU()
    layers["pool1"] = nn.MaxPool2d(2)  # (N, 32, 13, 13)
    if dropout:
        layers["drop1"] = Dropout(dropout[0])
    layers["conv2"] = conv2d(32, 64, 3)  # (N, 64, 11, 11)
    layers["conv2_relu"] = nn.ReLU()
    layers["pool2"] = nn.MaxPool2d(2)  # (N, 64, 5, 5)
    if dropout:
        layers["drop2"] = Dropout(dropout[1])
    layers["conv3"] = conv2d(64, 128, 3)  # (N, 128, 3, 3)
    layers["conv3_relu"] = nn.ReLU()
    if dropout:
        layers["drop3"] = Dropout(dropout[2])
    layers["flatten"] = Flatten()  # (N, 1152)
    layers["dense1"] = dense(128 * 3 * 3, 128)  # (N, 128)
    layers["dense1_relu"] = nn.ReLU()
    if dropout:
        layers["drop4"] = Dropout(dropout[3])
    layers["dense2"] = dense(128, num_classes)  # (N, classes) logits
    return nn.Sequential(layers)


@register("conv3", "004 CNN: Conv 32 (he_normal) → pool → Conv 64 → pool → Conv 128 → Dense 128 → classes")
def conv3(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Write-up 004's first model (it overfits after a few epochs, which motivates conv3-dropout)."""
    return _conv3(num_classes, in_channels, dropout=None)


@register("conv3-dropout", "004 CNN with dropout 0.25 / 0.25 / 0.4 / 0.3 after pool1, pool2, conv3, dense1")
def conv3_dropout(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Write-up 004's second model: the same layers plus four Dropout layers."""
    return _conv3(num_classes, in_channels, dropout=(0.25, 0.25, 0.4, 0.3))


@register("minivgg", "001 MiniVGGNet: 2 x [(Conv 3x3 same → ReLU → BN) x 2 → MaxPool → Dropout 0.25] → "
                     "Dense 512 → ReLU → BN → Dropout 0.5 → classes")
def minivgg(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Write-up 001's MiniVGGNet.build(): BatchNorm after the activation, as the write-up orders it."""
    return nn.Sequential(OrderedDict(
        rescale=Rescale(),
        conv1_1=conv2d(in_channels, 32, 3, padding=1),  # (N, 32, 28, 28): padding="same"
        conv1_1_relu=nn.ReLU(),
        conv1_1_bn=batch_norm2d(32),
        conv1_2=conv2d(32, 32, 3, padding=1),  # (N, 32, 28, 28)
        conv1_2_relu=nn.ReLU(),
        conv1_2_bn=batch_norm2d(32),
        pool1=nn.MaxPool2d(2),  # (N, 32, 14, 14)
        drop1=Dropout(0.25),
        conv2_1=conv2d(32, 64, 3, padding=1),  # (N, 64, 14, 14)
        conv2_1_relu=nn.ReLU(),
        conv2_1_bn=batch_norm2d(64),
        conv2_2=conv2d(64, 64, 3, padding=1),  # (N, 64, 14, 14)
        conv2_2_relu=nn.ReLU(),
        conv2_2_bn=batch_norm2d(64),
        pool2=nn.MaxPool2d(2),  # (N, 64, 7, 7)
        drop2=Dropout(0.25),
        flatten=Flatten(),  # (N, 3136)
        dense1=dense(64 * 7 * 7, 512),  # (N, 512)
        dense1_relu=nn.ReLU(),
        dense1_bn=batch_norm1d(512),
        drop3=Dropout(0.5),
        dense2=dense(512, num_classes),  # (N, classes) logits
    ))


@register("fmnistcnn", "002 FashionMNISTCNN default spec: 3 conv blocks (32, 64, 128) → fc 512 → fc 256 → "
                       "classes, BatchNorm everywhere")
def fmnistcnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Write-up 002's default model, built from its parameter dictionary (see spec.py)."""
    return build_from_spec(with_num_classes(DEFAULT_SPEC, num_classes), num_classes, in_channels)
