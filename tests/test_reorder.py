"""models.pool_before_activation: the trainer runs max-pooling before ReLU, the same function and gradient with a
quarter of the activation's work (models/reorder.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fmnist import models
from fmnist.engine.config import TrainConfig
from fmnist.engine.trainer import setup
from fmnist.models.reorder import pool_before_activation, swappable


def _order(model: nn.Module) -> list[str]:
    return [type(module).__name__ for module in model.children()]


@pytest.mark.parametrize("name", ["baseline", "conv64x2", "conv3", "conv3-dropout", "fmnistcnn"])
def test_reordered_write_up_models_compute_the_same_outputs_and_gradients(name, fashion):
    torch.manual_seed(0)
    model = models.create(name).to(memory_format=torch.channels_last)
    reordered = pool_before_activation(model)
    assert reordered is not model and _order(reordered) != _order(model)
    before = list(zip(_order(model), _order(model)[1:]))
    after = list(zip(_order(reordered), _order(reordered)[1:]))
    assert ("ReLU", "MaxPool2d") in before and ("ReLU", "MaxPool2d") not in after  # every pair swapped
    assert after.count(("MaxPool2d", "ReLU")) == before.count(("ReLU", "MaxPool2d"))
    assert dict(reordered.named_parameters()) == dict(model.named_parameters())  # the same tensors, same names
    assert list(reordered.state_dict()) == list(model.state_dict())
    images = torch.from_numpy(fashion.train.images[:64]).unsqueeze(1)
    labels = torch.from_numpy(fashion.train.labels[:64]).long()
    model.eval()  # dropout off, so both see the same network
    reordered.eval()
    expected, got = model(images), reordered(images)
    assert torch.equal(expected, got)
    weights = list(model.parameters())
    expected_grads = torch.autograd.grad(F.cross_entropy(expected, labels), weights)
    got_grads = torch.autograd.grad(F.cross_entropy(got, labels), weights)
    assert all(torch.equal(a, b) for a, b in zip(expected_grads, got_grads))
    assert any(grad.abs().sum() > 0 for grad in got_grads)


def test_reordered_gradients_are_the_same_under_bf16_autocast(fashion):
    # bf16 rounds many conv outputs to the same value: ReLU's gradient is still the write-up order's
    torch.manual_seed(0)
    model = models.create("conv64x2").to(memory_format=torch.channels_last)
    reordered = pool_before_activation(model)
    images = torch.from_numpy(fashion.train.images[:128]).unsqueeze(1)
    labels = torch.from_numpy(fashion.train.labels[:128]).long()
    grads = []
    for network in (model, reordered):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = network(images)
        grads.append(torch.autograd.grad(F.cross_entropy(logits.float(), labels), list(model.parameters())))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_only_relu_right_before_a_max_pool_is_swapped():
    conv = nn.Conv2d(1, 2, 3)
    for activation in (nn.GELU(), nn.LeakyReLU(0.2), nn.Tanh(), nn.ELU()):  # gradients could differ at ties
        kept = nn.Sequential(conv, activation, nn.MaxPool2d(2))
        assert pool_before_activation(kept) is kept and not swappable(activation)
    assert pool_before_activation(nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(2)))[1].__class__ is nn.ReLU
    with_indices = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2, return_indices=True))  # a tuple comes out
    assert pool_before_activation(with_indices) is with_indices
    assert swappable(nn.ReLU()) and swappable(nn.ReLU6())

    class Custom(nn.Sequential):  # a forward of its own is not rearranged
        def forward(self, x):
            return super().forward(x) * 2

    custom = Custom(conv, nn.ReLU(), nn.MaxPool2d(2))
    assert pool_before_activation(custom) is custom
    nested = nn.Sequential(nn.Sequential(conv, nn.ReLU6(), nn.MaxPool2d(2)), nn.Flatten()).train(False)
    swapped = pool_before_activation(nested)
    assert _order(swapped[0]) == ["Conv2d", "MaxPool2d", "ReLU6"] and _order(nested[0]) == ["Conv2d", "ReLU6", "MaxPool2d"]
    assert not swapped.training and swapped[0][0] is conv
    x = torch.randn(3, 1, 9, 9) * 10
    assert torch.equal(swapped(x), nested(x))


def test_the_trainer_steps_through_the_reordered_model_and_keeps_the_write_up_order(fashion):
    training = setup(TrainConfig(model="baseline", epochs=1, device="cpu", precision="fp32"),
                     fashion.limit(train=64, test=32))
    assert _order(training.trainer)[2:4] == ["MaxPool2d", "ReLU"]
    assert _order(training.model)[2:4] == ["ReLU", "MaxPool2d"]  # summaries, feature maps and files: Keras's order
    assert training.trainer.conv1 is training.model.conv1
