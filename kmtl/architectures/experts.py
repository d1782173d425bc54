"""Stacked MLPs: many experts (or gates) of the same shape evaluated side by side.

Shared by the mixture-of-experts family (MMoE, CGC, PLE) and their gates. The
`count` MLPs of a stack keep their weights in `(count, fan_in, fan_out)` kernels
and `(count, fan_out)` biases, so one matmul (or one batched matmul) runs all of
them instead of `count` separate Dense layers.
"""

import copy

from keras import initializers
from keras import ops


def stacked_initializer(initializer, count):
    """An initializer for `(count, fan_in, fan_out)` kernels: `count` independent
    draws of `initializer` for `(fan_in, fan_out)`, so each expert (or gate) is
    initialized with the fan-in and fan-out of a plain Dense kernel.

    Keras initializers fix their seed when created, so each draw uses a fresh
    instance (seed + i when a seed was given); otherwise every expert would start
    identical."""
    config = initializers.serialize(initializers.get(initializer))

    def draw(i, shape, dtype):
        fresh = copy.deepcopy(config)
        seed = fresh.get("config", {}).get("seed")
        if seed is not None:
            fresh["config"]["seed"] = seed + i
        return initializers.deserialize(fresh)(shape, dtype=dtype)

    def initialize(shape, dtype=None):
        return ops.stack([draw(i, shape[1:], dtype) for i in range(count)])

    return initialize


def add_stack(layer, prefix, count, sizes, kernel_initializer, kernel_regularizer,
              bias_initializer="zeros"):
    """Creates on `layer` the weights of `count` MLPs with layer sizes `sizes`
    (`(fan_in, units_1, ..., units_p)`).

    The weights are named `<prefix>_kernel_<i>` `(count, fan_in, fan_out)` and
    `<prefix>_bias_<i>` `(count, fan_out)`. Returns `(kernels, biases)`, two lists
    of `len(sizes) - 1` variables.
    """
    kernels, biases = [], []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        kernels.append(layer.add_weight(
            shape=(count, fan_in, fan_out), name=f"{prefix}_kernel_{i}",
            initializer=stacked_initializer(kernel_initializer, count),
            regularizer=kernel_regularizer))
        biases.append(layer.add_weight(
            shape=(count, fan_out), name=f"{prefix}_bias_{i}",
            initializer=bias_initializer))
    return kernels, biases


def apply_stack(x, kernels, biases, activation, last_linear=False):
    """Runs the `count` MLPs of a stack side by side.

    Args:
        x: `(batch, d)`, read by every MLP, or `(count, batch, d)`, one input per
            MLP.
        kernels, biases: the stack's weights, as returned by `add_stack`.
        activation: a callable applied after every layer (after all but the last
            when `last_linear`).
        last_linear: bool. Leave the last layer linear (gate logits).

    Returns:
        `(count, batch, units)`.

    With a shared `(batch, d)` input the first layer is one matmul against the
    kernels laid side by side, `(d, count * units)`; every other layer is one
    batched matmul.
    """
    count, fan_in, fan_out = kernels[0].shape
    if len(x.shape) == 2:
        side_by_side = ops.reshape(ops.transpose(kernels[0], (1, 0, 2)),
                                   (fan_in, count * fan_out))
        h = ops.matmul(x, side_by_side)
        h = ops.transpose(ops.reshape(h, (-1, count, fan_out)), (1, 0, 2))
    else:
        h = ops.matmul(x, kernels[0])
    for i, (kernel, bias) in enumerate(zip(kernels, biases)):
        if i:
            h = ops.matmul(h, kernel)
        h = h + bias[:, None, :]
        if not (last_linear and i == len(kernels) - 1):
            h = activation(h)
    return h

