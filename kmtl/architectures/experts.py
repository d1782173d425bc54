"""Stacked MLPs: many experts, gates or task towers of the same shape evaluated
side by side.

Shared by the mixture-of-experts family (MMoE, CGC, PLE), their gates and the
one-tower-per-task architectures (SoftSharing, CrossStitch, through
`StackedTowers`). The `count` MLPs of a stack keep their weights in
`(count, fan_in, fan_out)` kernels and `(count, fan_out)` biases, so one matmul
(or one batched matmul) runs all of them instead of `count` separate Dense
layers.
"""

import copy
import warnings

import keras
from keras import initializers
from keras import ops

from kmtl._checks import check_rate
from kmtl._checks import check_units
from kmtl.architectures.base import Architecture


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
              bias_initializer="zeros", autocast=True):
    """Creates on `layer` the weights of `count` MLPs with layer sizes `sizes`
    (`(fan_in, units_1, ..., units_p)`).

    The weights are named `<prefix>_kernel_<i>` `(count, fan_in, fan_out)` and
    `<prefix>_bias_<i>` `(count, fan_out)`. Returns `(kernels, biases)`, two lists
    of `len(sizes) - 1` variables. With `autocast=False` the kernels are not cast
    to the compute dtype inside `layer.call` (the caller casts them; the biases
    are always autocast).
    """
    kernels, biases = [], []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        kernels.append(layer.add_weight(
            shape=(count, fan_in, fan_out), name=f"{prefix}_kernel_{i}",
            initializer=stacked_initializer(kernel_initializer, count),
            regularizer=kernel_regularizer, autocast=autocast))
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


class StackedTowers(Architecture):
    """Base of the architectures with one MLP tower per task, the towers
    evaluated side by side (`SoftSharing`, `CrossStitch`).

    It holds the options the subclasses share, creates the towers' weights
    `tower_kernel_<i>` `(T, d_in, u)` and `tower_bias_<i>` `(T, u)` (independent
    `glorot_uniform` draws per tower) in `build`, and gives the output shape and
    the shared part of the config. Subclasses write `call` and add their own
    options to `get_config`.

    Args:
        task_names: list of str. The tasks; one tower each.
        units: list of int. Hidden units of each tower.
        activation: str. Activation of every hidden layer.
        dropout: float in [0, 1). Dropout after each hidden layer.
        kernel_regularizer: Keras regularizer identifier or None.

    Raises:
        ValueError: empty `task_names`, non-positive units, dropout outside
            [0, 1).
    """

    # Whether the tower kernels are cast to the compute dtype when `call` reads
    # them (False: `call` casts them itself).
    autocast_kernels = True

    def __init__(self, task_names, units, activation, dropout, kernel_regularizer,
                 **kwargs):
        super().__init__(task_names, **kwargs)
        self.units = check_units(units, "units")
        self.activation = activation
        self.activation_fn = keras.activations.get(activation)
        self.dropout = check_rate(dropout, "dropout")
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        # === Layers ===
        self.dropout_layer = (
            keras.layers.Dropout(self.dropout) if self.dropout else None
        )

    def build(self, input_shape):
        self.kernels, self.biases = add_stack(
            self, "tower", len(self.task_names), (input_shape[-1], *self.units),
            "glorot_uniform", self.kernel_regularizer,
            autocast=self.autocast_kernels)

    def compute_output_shape(self, input_shape):
        return {name: (*input_shape[:-1], self.units[-1]) for name in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "units": list(self.units),
            "activation": self.activation,
            "dropout": self.dropout,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


class MixtureOfExperts(Architecture):
    """Base of the mixture-of-experts architectures (`MMoE`, `CGC`, `PLE`).

    It holds the expert and gate options they share, `gate_options` (the
    keyword arguments for `kmtl.architectures.gates.get`), the dropout on the
    experts' outputs, the output shape and the shared part of the config.
    Subclasses check their expert counts, resolve their gate with
    `gates.get(gate, **self.gate_options)`, set `self.gate` to its registered
    name, and write `build`, `call` and `owned_slices`.

    Args:
        task_names: list of str. The tasks.
        expert_units: list of int. Hidden units of each expert.
        gate_units: list of int (may be empty). Hidden units of each gate.
        activation: str. Activation of expert and gate hidden layers.
        dropout: float in [0, 1). Dropout on the experts' outputs.
        kernel_initializer: Keras initializer identifier, applied per expert.
        kernel_regularizer: Keras regularizer identifier or None.
        top_k, gamma, entropy_weight: DSelect-k gate options.

    Raises:
        ValueError: empty `task_names`, non-positive units, dropout outside
            [0, 1).
    """

    def __init__(self, task_names, expert_units, gate_units, activation, dropout,
                 kernel_initializer, kernel_regularizer, top_k, gamma, entropy_weight,
                 **kwargs):
        super().__init__(task_names, **kwargs)
        self.expert_units = check_units(expert_units, "expert_units")
        self.gate_units = check_units(gate_units, "gate_units", allow_empty=True)
        self.activation = activation
        self.activation_fn = keras.activations.get(activation)
        self.dropout = check_rate(dropout, "dropout")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.gate_options = {
            "units": self.gate_units, "activation": activation,
            "kernel_initializer": self.kernel_initializer,
            "kernel_regularizer": self.kernel_regularizer,
            "top_k": top_k, "gamma": gamma, "entropy_weight": entropy_weight}
        self.top_k, self.gamma, self.entropy_weight = top_k, gamma, entropy_weight
        # === Layers ===
        self.dropout_layer = (
            keras.layers.Dropout(self.dropout) if self.dropout else None
        )

    def check_top_k(self, choices):
        """Warns when a DSelect-k gate has more selectors (`top_k`) than the
        `choices` (> 1) experts it sees: selectors then pick the same expert,
        which works but is rarely what was meant. (One expert is accepted
        silently: there is nothing to choose.)"""
        if self.gate == "dselect_k" and 1 < choices < self.top_k:
            warnings.warn(
                f"{type(self).__name__} {self.name!r}: top_k={self.top_k} exceeds "
                f"the {choices} experts each dselect_k gate chooses from, so "
                f"some selectors will pick the same expert. Use top_k <= "
                f"{choices} or more experts.", stacklevel=3)

    def compute_output_shape(self, input_shape):
        return {name: (*input_shape[:-1], self.expert_units[-1])
                for name in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "expert_units": list(self.expert_units),
            "gate_units": list(self.gate_units),
            "gate": self.gate,
            "activation": self.activation,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "top_k": self.top_k,
            "gamma": self.gamma,
            "entropy_weight": self.entropy_weight,
        }
