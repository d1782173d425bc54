"""Shared bottom: hard parameter sharing."""

import keras

from kmtl._checks import check_rate
from kmtl._checks import check_units
from kmtl.architectures.base import ARCHITECTURES
from kmtl.architectures.base import Architecture


@ARCHITECTURES.register("shared_bottom")
class SharedBottom(Architecture):
    """Hard parameter sharing: one MLP shared by every task.

    Caruana, "Multitask Learning", Machine Learning 28, 1997
    (doi:10.1023/A:1007379606734). Every task reads the same representation;
    the task-specific towers on top are added by `kmtl.build_model`.

    Args:
        task_names: list of str. The tasks, in output order.
        units: list of int, default `(256, 128)`. Hidden units of the shared layers.
        activation: str, default `"relu"`.
        dropout: float in [0, 1), default 0. Dropout after each hidden layer.
        kernel_regularizer: Keras regularizer identifier or None.

    Input shape:
        `(batch, features)`.

    Output shape:
        dict `{task_name: (batch, units[-1])}`, the same tensor for every task.

    Trainable weights:
        `sum(d_in * u + u)` over the hidden layers.

    Raises:
        ValueError: empty `task_names`, non-positive units, dropout outside [0, 1).

    Examples:
        >>> layer = SharedBottom(["a", "b"], units=(8,))
        >>> {k: v.shape for k, v in layer(np.ones((2, 4))).items()}
        {'a': (2, 8), 'b': (2, 8)}
    """

    # Every task reads the same tensor: gradients with respect to it are
    # comparable across tasks (MultiTaskModel's gradients="representation").
    shares_representation = True

    def __init__(self, task_names, units=(256, 128), activation="relu", dropout=0.0,
                 kernel_regularizer=None, **kwargs):
        super().__init__(task_names, **kwargs)
        self.units = check_units(units, "units")
        self.activation = activation
        self.dropout = check_rate(dropout, "dropout")
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        # === Layers ===
        self.hidden = [
            keras.layers.Dense(u, activation=activation,
                               kernel_regularizer=self.kernel_regularizer,
                               name=f"shared_{i}")
            for i, u in enumerate(self.units)
        ]
        self.dropouts = [keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
                         for i in range(len(self.units))] if self.dropout else []

    def build(self, input_shape):
        shape = input_shape
        for dense in self.hidden:
            dense.build(shape)
            shape = dense.compute_output_shape(shape)

    def call(self, inputs, training=None):
        x = inputs
        for i, dense in enumerate(self.hidden):
            x = dense(x)
            if self.dropouts:
                x = self.dropouts[i](x, training=training)
        return {name: x for name in self.task_names}

    def owned_slices(self):
        """`{}`: every weight is shared by every task."""
        return {}

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
