"""Cross-stitch networks: task towers whose activations are mixed after every
hidden layer."""

import keras
import numpy as np
from keras import ops

from kmtl._checks import check_float
from kmtl.architectures.base import ARCHITECTURES
from kmtl.architectures.experts import StackedTowers
from kmtl.architectures.experts import apply_stack


def cross_stitch_initial_value(num_tasks, self_weight):
    """The `(T, T)` initial mixing matrix: `self_weight` on the diagonal,
    `(1 - self_weight) / (T - 1)` off it, so every row sums to 1 (`[[1]]` for one
    task)."""
    if num_tasks == 1:
        return np.ones((1, 1), "float32")
    other = (1.0 - self_weight) / (num_tasks - 1)
    value = np.full((num_tasks, num_tasks), other, "float32")
    np.fill_diagonal(value, self_weight)
    return value


@ARCHITECTURES.register("cross_stitch")
class CrossStitch(StackedTowers):
    """Cross-stitch network: one MLP tower per task, the towers' activations
    mixed by a trainable matrix after every hidden layer.

    Misra, Shrivastava, Gupta and Hebert, "Cross-stitch Networks for Multi-task
    Learning", CVPR 2016 (arXiv:1604.03539). After hidden layer `l` (dense,
    activation, dropout) the cross-stitch unit replaces task `t`'s activation
    by a linear combination of every task's:

        `x~_t = sum_s alpha_l[t, s] x_s`,

    and `x~_t` is what tower `t`'s next layer (or the task's output) reads.
    `alpha_l` is one trainable `(T, T)` matrix per layer, shared by all units of
    the layer (the paper's formulation; a per-channel variant would multiply the
    weight count by the layer width). It starts at `self_weight` on the diagonal
    and `(1 - self_weight) / (T - 1)` off it, the paper's best initialization
    `(alpha_S, alpha_D) = (0.9, 0.1)` for two tasks, and is not constrained
    during training. The towers are evaluated side by side (stacked kernels
    `(T, d_in, u)`, one matmul per layer).

    Not done here: the paper trains alpha with a learning rate 10^2 to 10^3
    times the base rate, and initializes the towers from networks trained on
    each task alone; here alpha uses the model's optimizer as it is, and the
    towers start from independent `glorot_uniform` draws.

    Args:
        task_names: list of str. The tasks; one tower each.
        units: list of int, default `(256, 128)`. Hidden units of each tower;
            one cross-stitch unit after each.
        activation: str, default `"relu"`. Activation of every hidden layer.
        dropout: float in [0, 1), default 0. Dropout after each hidden layer,
            before its cross-stitch unit.
        self_weight: float in [0, 1], default 0.9. Initial diagonal of alpha.
        kernel_regularizer: Keras regularizer identifier or None.

    Input shape:
        `(batch, features)`.

    Output shape:
        dict `{task_name: (batch, units[-1])}`, the mixed output of the last
        layer for each task.

    Trainable weights:
        towers: `num_tasks * sum(d_in * u + u)` over `units`;
        cross-stitch units: `len(units) * num_tasks ** 2`.

    Raises:
        ValueError: empty `task_names`, non-positive units, dropout outside
            [0, 1), `self_weight` outside [0, 1].

    Examples:
        >>> layer = CrossStitch(["a", "b"], units=(8, 4))
        >>> {k: v.shape for k, v in layer(np.ones((2, 5))).items()}
        {'a': (2, 4), 'b': (2, 4)}
        >>> alpha = keras.ops.convert_to_numpy(layer.alphas[0]).astype("float64")
        >>> alpha.round(2).tolist()
        [[0.9, 0.1], [0.1, 0.9]]
    """

    def __init__(self, task_names, units=(256, 128), activation="relu", dropout=0.0,
                 self_weight=0.9, kernel_regularizer=None, **kwargs):
        super().__init__(task_names, units, activation, dropout, kernel_regularizer,
                         **kwargs)
        self.self_weight = check_float(self_weight, "self_weight", 0, 1)

    def build(self, input_shape):
        super().build(input_shape)
        count = len(self.task_names)
        initial = cross_stitch_initial_value(count, self.self_weight)
        self.alphas = [
            self.add_weight(shape=(count, count), name=f"cross_stitch_{i}",
                            initializer=keras.initializers.Constant(initial))
            for i in range(len(self.units))
        ]

    def owned_slices(self):
        """Row t of the last cross-stitch matrix is task t's (it only mixes
        task t's output); every tower layer and every earlier stitch reaches
        every task."""
        if not self.built:
            return {}
        return self.slices_owned_by([self.alphas[-1]], self.task_names)

    def call(self, inputs, training=None):
        h = inputs
        for kernel, bias, alpha in zip(self.kernels, self.biases, self.alphas):
            h = apply_stack(h, [kernel], [bias], self.activation_fn)
            if self.dropout_layer is not None:
                h = self.dropout_layer(h, training=training)
            h = ops.einsum("ts,sbu->tbu", alpha, h)
        return {name: h[t] for t, name in enumerate(self.task_names)}

    def diagnostics(self, inputs=None):
        """The cross-stitch matrices.

        Args:
            inputs: ignored (alpha does not depend on the input); accepted for
                the diagnostics contract.

        Returns:
            `{"cross_stitch_<l>": (alpha_l, task_names, task_names)}`, `alpha_l`
            the `(T, T)` float tensor of layer `l`; row `t` holds the weights task
            `t`'s next layer gives each task's activation.
        """
        return {f"cross_stitch_{i}": (ops.convert_to_tensor(alpha),
                                      list(self.task_names), list(self.task_names))
                for i, alpha in enumerate(self.alphas)}

    def get_config(self):
        return {**super().get_config(), "self_weight": self.self_weight}
