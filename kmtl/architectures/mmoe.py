"""Multi-gate Mixture-of-Experts (MMoE)."""

import copy

import keras
from keras import ops

from kmtl.architectures._checks import check_positive_int
from kmtl.architectures._checks import check_rate
from kmtl.architectures._checks import check_task_names
from kmtl.architectures._checks import check_units


def _stacked(initializer, count):
    """An initializer for `(count, fan_in, fan_out)` kernels: `count` independent
    draws of `initializer` for `(fan_in, fan_out)`, so each expert (or gate) is
    initialized with the fan-in and fan-out of a plain Dense kernel.

    Keras initializers fix their seed when created, so each draw uses a fresh
    instance (seed + i when a seed was given); otherwise every expert would start
    identical."""
    config = keras.initializers.serialize(keras.initializers.get(initializer))

    def draw(i, shape, dtype):
        fresh = copy.deepcopy(config)
        seed = fresh.get("config", {}).get("seed")
        if seed is not None:
            fresh["config"]["seed"] = seed + i
        return keras.initializers.deserialize(fresh)(shape, dtype=dtype)

    def initialize(shape, dtype=None):
        return ops.stack([draw(i, shape[1:], dtype) for i in range(count)])

    return initialize


@keras.saving.register_keras_serializable(package="kmtl")
class MMoE(keras.layers.Layer):
    """Multi-gate Mixture-of-Experts.

    Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts", KDD 2018. `num_experts` expert
    MLPs read the input; each task has its own softmax gate over the experts, and
    the task's representation is the gate-weighted sum of expert outputs:
    `f_k(x) = sum_i softmax(W_gk x)_i * e_i(x)`.

    The experts (and the gates) are evaluated side by side, one matmul per layer,
    not as separate Dense layers. The defaults (3 experts of (256, 128) units, linear
    gates) are DeepCTR's, which the kmtl Census-Income benchmark compares against;
    the paper tunes sizes per data set.

    Args:
        task_names: list of str. The tasks; one gate each.
        num_experts: int, default 3.
        expert_units: list of int, default `(256, 128)`. Hidden units of each expert.
        gate_units: list of int, default `()`. Hidden units of each gate before its
            softmax layer (empty: a linear gate, as in the paper).
        activation: str, default `"relu"`. Activation of expert and gate hidden
            layers.
        dropout: float in [0, 1), default 0. Dropout on expert hidden layers.
        kernel_initializer: default `"glorot_uniform"`, applied per expert.
        kernel_regularizer: Keras regularizer identifier or None.

    Input shape:
        `(batch, features)`.

    Output shape:
        dict `{task_name: (batch, expert_units[-1])}`.

    Trainable weights:
        experts: `num_experts * sum(d_in * u + u)` over `expert_units`;
        gates: `num_tasks * (sum(d_in * u + u) over gate_units + d * E + E)`.

    Raises:
        ValueError: empty `task_names`, `num_experts < 1`, non-positive units.

    Example:

    >>> layer = MMoE(["a", "b"], num_experts=4, expert_units=(8,))
    >>> {k: v.shape for k, v in layer(np.ones((2, 5))).items()}
    {'a': (2, 8), 'b': (2, 8)}
    """

    def __init__(self, task_names, num_experts=3, expert_units=(256, 128),
                 gate_units=(), activation="relu", dropout=0.0,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.task_names = check_task_names(task_names)
        self.num_experts = check_positive_int(num_experts, "num_experts")
        self.expert_units = check_units(expert_units, "expert_units")
        self.gate_units = check_units(gate_units, "gate_units", allow_empty=True)
        self.activation = activation
        self.activation_fn = keras.activations.get(activation)
        self.dropout = check_rate(dropout, "dropout")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.dropout_layer = (
            keras.layers.Dropout(self.dropout) if self.dropout else None
        )

    def _stack(self, prefix, count, sizes):
        kernels, biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            kernels.append(self.add_weight(
                shape=(count, fan_in, fan_out), name=f"{prefix}_kernel_{i}",
                initializer=_stacked(self.kernel_initializer, count),
                regularizer=self.kernel_regularizer))
            biases.append(self.add_weight(
                shape=(count, fan_out), name=f"{prefix}_bias_{i}", initializer="zeros"))
        return kernels, biases

    def build(self, input_shape):
        features = input_shape[-1]
        self.expert_kernels, self.expert_biases = self._stack(
            "expert", self.num_experts, (features, *self.expert_units))
        self.gate_kernels, self.gate_biases = self._stack(
            "gate", len(self.task_names),
            (features, *self.gate_units, self.num_experts))

    def _apply(self, x, kernels, biases, last_linear):
        """Runs `count` MLPs side by side on `x` `(batch, d)`.

        The first layer is one matmul against the kernels laid side by side,
        `(d, count * units)`; later layers are one batched matmul. Returns
        `(count, batch, units)`.
        """
        count, fan_in, fan_out = kernels[0].shape
        side_by_side = ops.reshape(ops.transpose(kernels[0], (1, 0, 2)),
                                   (fan_in, count * fan_out))
        h = ops.matmul(x, side_by_side)
        h = ops.transpose(ops.reshape(h, (-1, count, fan_out)), (1, 0, 2))
        for i, (kernel, bias) in enumerate(zip(kernels, biases)):
            if i:
                h = ops.matmul(h, kernel)
            h = h + bias[:, None, :]
            if not (last_linear and i == len(kernels) - 1):
                h = self.activation_fn(h)
        return h

    def gate_weights(self, inputs):
        """Gate softmax weights `(num_tasks, batch, num_experts)`."""
        logits = self._apply(inputs, self.gate_kernels, self.gate_biases, True)
        return ops.softmax(logits, axis=-1)

    def call(self, inputs, training=None):
        experts = self._apply(inputs, self.expert_kernels, self.expert_biases, False)
        if self.dropout_layer is not None:
            experts = self.dropout_layer(experts, training=training)
        gates = self.gate_weights(inputs)
        mixed = ops.einsum("tbe,ebu->tbu", gates, experts)
        return {name: mixed[t] for t, name in enumerate(self.task_names)}

    def compute_output_shape(self, input_shape):
        return {name: (*input_shape[:-1], self.expert_units[-1])
                for name in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "task_names": list(self.task_names),
            "num_experts": self.num_experts,
            "expert_units": list(self.expert_units),
            "gate_units": list(self.gate_units),
            "activation": self.activation,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }
