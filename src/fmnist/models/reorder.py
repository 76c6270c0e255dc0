"""Pool before the activation: the same function as the write-ups' conv → ReLU → max-pool, for less work.

Max-pooling commutes with every non-decreasing activation: max(f(a), f(b)) = f(max(a, b)). So conv → ReLU →
MaxPool(2) computes exactly what conv → MaxPool(2) → ReLU computes, and the second applies the activation (and
its gradient) to a quarter of the values. For ReLU (and ReLU6) the gradient is the same too: where inputs tie
after the activation (all at 0, or all at 6), ReLU's gradient there is 0 in either order, and elsewhere both
orders send it to the same largest input. Other monotone activations (LeakyReLU, ELU, Tanh, Sigmoid) are left in
place: where two different inputs round to the same activation value (in bf16 often, in fp32 for Tanh and
Sigmoid), the two orders send the gradient to different inputs (a check in review: so under bf16 autocast
for all four, and in fp32 for Tanh and Sigmoid).

The models keep the write-ups' layer order (their summaries, feature maps and files stay Keras's); the
trainer runs `pool_before_activation(model)`, a second container over the same modules, so the weights,
hooks and state_dict are the model's own. Write-up 000's baseline at batch 32, fp32, 2-core AMD EPYC: time
per step × 0.91 ± 0.07 with AVX-512, × 0.94 ± 0.11 held to AVX2 (benchmarks/layout_ab.py --change reorder;
benchmarks/README.md, "Freed memory, waiting workers, max-pool first").
"""

from __future__ import annotations

from torch import nn

# Activations after which a max-pool gives the same values and the same gradient (module docstring).
_SWAPPABLE = (nn.ReLU, nn.ReLU6)


def swappable(module: nn.Module) -> bool:
    """Whether a max-pool right after `module` may run before it instead (module docstring)."""
    return type(module) in _SWAPPABLE


def pool_before_activation(model: nn.Module) -> nn.Module:
    """`model`, or, where an nn.Sequential (at any depth of nested Sequentials) has a ReLU right before an
    nn.MaxPool2d, a new Sequential over the same modules with each such pair swapped. Other
    containers are left as they are (their forward is their own code). Names are kept, so the result's
    state_dict is the model's."""
    if type(model) is not nn.Sequential:  # a subclass may have a forward of its own
        return model
    names = list(model._modules)
    children = {name: pool_before_activation(module) for name, module in model._modules.items()}
    position, changed = 0, any(children[name] is not model._modules[name] for name in names)
    while position < len(names) - 1:
        first, second = children[names[position]], children[names[position + 1]]
        if swappable(first) and type(second) is nn.MaxPool2d and not second.return_indices:
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
