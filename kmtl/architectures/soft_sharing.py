"""Soft parameter sharing: one tower per task, an L2 penalty between the towers."""

import keras
from keras import ops

from kmtl._checks import check_float
from kmtl.architectures.base import ARCHITECTURES
from kmtl.architectures.experts import StackedTowers
from kmtl.architectures.experts import apply_stack


@ARCHITECTURES.register("soft_sharing")
class SoftSharing(StackedTowers):
    """Soft parameter sharing: one MLP tower per task, pulled together by an L2
    penalty between the towers' kernels.

    Duong, Cohn, Bird and Cook, "Low Resource Dependency Parsing: Cross-lingual
    Parameter Sharing in a Neural Network Parser", ACL 2015 (two parsers, each
    with its own weights, and `lambda ||W_1 - W_2||_F^2` added to the loss);
    surveyed as soft parameter sharing by Ruder, "An Overview of Multi-Task
    Learning in Deep Neural Networks", 2017 (arXiv:1706.05098). Every task reads
    the input through its own tower; no weight is shared. The penalty

        `penalty = strength * sum_l sum_{a<b} ||W_la - W_lb||_F^2`

    sums over the hidden layers `l` and the unordered task pairs `a < b`, on the
    kernels only (biases are free, as with weight decay). It is computed as
    `strength * sum_l T * sum_a ||W_la - mean_b W_lb||_F^2`, the same number
    (exact, and O(T) rather than O(T^2)). `call` adds it with `add_loss`, so
    `MultiTaskModel` adds it to the total loss (and logs it as
    `sharing_penalty`). The paper tunes lambda per language pair; the default
    strength 1e-3 is kmtl's: with 20 inputs, glorot-initialized (256, 128)
    towers and two tasks it starts near 0.4, the size of a task loss.

    The towers are evaluated side by side (stacked kernels `(T, d_in, u)`, one
    matmul per layer). Tower t's slices are declared task t's own
    (`owned_slices`), so `MultiTaskModel`'s gradient-based
    weightings give each tower its task's gradient and do not count the towers
    as shared parameters; only the penalty's gradient couples them.

    Args:
        task_names: list of str. The tasks; one tower each.
        units: list of int, default `(256, 128)`. Hidden units of each tower.
        activation: str, default `"relu"`. Activation of every hidden layer.
        dropout: float in [0, 1), default 0. Dropout after each hidden layer.
        strength: float >= 0, default 1e-3. The penalty's weight (0: independent
            towers).
        kernel_regularizer: Keras regularizer identifier or None (applied to the
            stacked kernels, in addition to the penalty).

    Input shape:
        `(batch, features)`.

    Output shape:
        dict `{task_name: (batch, units[-1])}`, each task its own tower's output.

    Trainable weights:
        `num_tasks * sum(d_in * u + u)` over `units`.

    Raises:
        ValueError: empty `task_names`, non-positive units, dropout outside
            [0, 1), negative `strength`.

    Examples:
        >>> layer = SoftSharing(["a", "b"], units=(8,), strength=0.01)
        >>> {k: v.shape for k, v in layer(np.ones((2, 5))).items()}
        {'a': (2, 8), 'b': (2, 8)}
        >>> float(layer.penalty()) > 0
        True
    """

    # The penalty is taken on the float32 kernels under mixed precision; `call`
    # casts the kernels to the compute dtype itself.
    autocast_kernels = False

    def __init__(self, task_names, units=(256, 128), activation="relu", dropout=0.0,
                 strength=1e-3, kernel_regularizer=None, **kwargs):
        super().__init__(task_names, units, activation, dropout, kernel_regularizer,
                         **kwargs)
        self.strength = check_float(strength, "strength", low=0)

    def owned_slices(self):
        """Tower t's slices are task t's: it only feeds task t's output (the
        penalty, a regularization loss, couples the towers)."""
        if not self.built:
            return {}
        return self.slices_owned_by([*self.kernels, *self.biases],
                                    self.task_names)

    def penalty(self):
        """`strength * sum_l sum_{a<b} ||W_la - W_lb||_F^2`, a float32 scalar: the
        value `call` adds to the loss (0 with one task or `strength=0`)."""
        if self.strength == 0 or len(self.task_names) == 1:
            return ops.zeros((), "float32")
        total = 0.0
        for kernel in self.kernels:
            centred = kernel - ops.mean(kernel, axis=0, keepdims=True)
            total = total + ops.sum(ops.square(centred))
        return self.strength * len(self.task_names) * total

    def call(self, inputs, training=None):
        h = inputs
        for kernel, bias in zip(self.kernels, self.biases):
            kernel = ops.cast(kernel, self.compute_dtype)
            h = apply_stack(h, [kernel], [bias], self.activation_fn)
            if self.dropout_layer is not None:
                h = self.dropout_layer(h, training=training)
        if self.strength and len(self.task_names) > 1:
            self.add_loss(self.penalty())
        return {name: h[t] for t, name in enumerate(self.task_names)}

    def diagnostics(self, inputs=None):
        """The distances between task towers, per hidden layer.

        Args:
            inputs: ignored (the towers' distances depend on the weights only);
                accepted for the diagnostics contract.

        Returns:
            `{"tower_distance_<l>": (D, task_names, task_names)}`, `D` a `(T, T)`
            float32 tensor, `D_ab = ||W_a - W_b||_F / sqrt(||W_a||_F ||W_b||_F)`
            for the kernels of layer `l` (0 on the diagonal; about sqrt(2) for
            independent random kernels of equal norm, 0 for equal ones; a small
            epsilon guards all-zero kernels).
        """
        count = len(self.task_names)
        result = {}
        for i, kernel in enumerate(self.kernels):
            kernel = ops.convert_to_tensor(kernel)
            norms = ops.sqrt(ops.sum(ops.square(kernel), axis=(1, 2)))
            rows = []
            for a in range(count):
                row = []
                for b in range(count):
                    if a == b:
                        row.append(ops.zeros((), kernel.dtype))
                        continue
                    distance = ops.sqrt(ops.sum(ops.square(kernel[a] - kernel[b])))
                    scale = ops.sqrt(norms[a] * norms[b]) + keras.config.epsilon()
                    row.append(distance / scale)
                rows.append(ops.stack(row))
            result[f"tower_distance_{i}"] = (
                ops.stack(rows), list(self.task_names), list(self.task_names))
        return result

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}
