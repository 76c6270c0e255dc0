"""Pool before the activation: the same function as the write-ups' conv → activation → max-pool, for less work.

Max-pooling commutes with every non-decreasing activation: max(f(a), f(b)) = f(max(a, b)). So conv → ReLU →
MaxPool(2) computes exactly what conv → MaxPool(2) → ReLU computes, and the second applies the activation (and
its gradient) to a quarter of the values. The gradient is the same too: both send it to the window's largest
input (f keeps the order), and ReLU passes none where that input is not positive, in either order.

The models keep the write-ups' layer order (their summaries, feature maps and files stay Keras's); the
trainer runs `pool_before_activation(model)`, a second container over the same modules, so the weights,
hooks and state_dict are the model's own. Write-up 000's baseline at batch 32, fp32, 2-core AMD EPYC: time
per step × 0.91 ± 0.07 with AVX-512, × 0.94 ± 0.11 held to AVX2 (benchmarks/layout_ab.py --change reorder;
benchmarks/README.md, "Freed memory, waiting workers, max-pool first").
"""

from __future__ import annotations

from torch import nn

# Activations that never decrease (f(a) <= f(b) whenever a <= b), by their settings.
_NON_DECREASING = {
    nn.ReLU: lambda module: True,
    nn.ReLU6: lambda module: True,
    nn.LeakyReLU: lambda module: module.negative_slope >= 0,
    nn.ELU: lambda module: module.alpha >= 0,
    nn.SELU: lambda module: True,
    nn.Tanh: lambda module: True,
    nn.Sigmoid: lambda module: True,
}


def non_decreasing(module: nn.Module) -> bool:
    """Whether `module` is an element-wise activation that max-pooling commutes with."""
    rule = _NON_DECREASING.get(type(module))
    return rule is not None and rule(module)


def pool_before_activation(model: nn.Module) -> nn.Module:
    """`model`, or, where an nn.Sequential (at any depth of nested Sequentials) has a non-decreasing activation
    right before an nn.MaxPool2d, a new Sequential over the same modules with each such pair swapped. Other
    containers are left as they are (their forward is their own code). Names are kept, so the result's
    state_dict is the model's."""
    if type(model) is not nn.Sequential:  # a subclass may have a forward of its own
        return model
    names = list(model._modules)
    children = {name: pool_before_activation(module) for name, module in model._modules.items()}
    position, changed = 0, any(children[name] is not model._modules[name] for name in names)
    while position < len(names) - 1:
        first, second = children[names[position]], children[names[position + 1]]
        if non_decreasing(first) and type(second) is nn.MaxPool2d:
            names[position], names[position + 1] = names[position + 1], names[position]
            position, changed = position + 2, True
        else:
            position += 1
    if not changed:
        return model
    reordered = nn.Sequential()
    for name in names:
        reordered.add_module(name, children[name])
    return reordered.train(model.training)
