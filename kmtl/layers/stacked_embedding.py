"""One embedding table for several categorical features."""

import numpy as np
from keras import initializers
from keras import layers
from keras import ops
from keras import saving


@saving.register_keras_serializable(package="kmtl")
class StackedEmbedding(layers.Layer):
    """Embeds several categorical features with one table.

    Equivalent to one `keras.layers.Embedding` per feature (same output, same
    number of weights), but feature `i`'s indices are shifted by the sizes of the
    features before it and looked up in one `(sum(input_dims), output_dim)`
    table: one gather, one gradient and one optimizer update instead of one per
    feature, which matters for tables with dozens of categorical columns.

    Args:
        input_dims: list of int. Vocabulary size of each feature (indices of
            feature `i` are in `[0, input_dims[i])`).
        output_dim: int. Embedding size, the same for every feature.
        embeddings_initializer: default `"uniform"`, as `keras.layers.Embedding`.
        columns: list of int or None. With one input matrix, the columns that
            hold the features' indices (None: every column, in order).

    Input shape:
        list of `len(input_dims)` integer tensors `(batch, 1)`, or one integer
        matrix `(batch, k)` whose `columns` (default: all) are the features.

    Output shape:
        `(batch, len(input_dims) * output_dim)`: the features' embeddings side by
        side, in input order.

    Raises:
        ValueError: empty `input_dims` or a non-positive size.

    Examples:
        >>> layer = StackedEmbedding([3, 5], 2)
        >>> layer([np.array([[0]]), np.array([[4]])]).shape
        (1, 4)
    """

    def __init__(self, input_dims, output_dim, embeddings_initializer="uniform",
                 columns=None, **kwargs):
        super().__init__(**kwargs)
        input_dims = [int(d) for d in input_dims]
        if not input_dims or min(input_dims) < 1 or int(output_dim) < 1:
            raise ValueError(
                f"input_dims must be positive sizes and output_dim positive. "
                f"Received: input_dims={input_dims}, output_dim={output_dim}"
            )
        self.input_dims = input_dims
        self.output_dim = int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.offsets = np.cumsum([0] + input_dims[:-1]).astype("int64")
        self.columns = None if columns is None else [int(c) for c in columns]
        if self.columns is not None and len(self.columns) != len(input_dims):
            raise ValueError(
                f"columns must give one column per feature ({len(input_dims)}). "
                f"Received: columns={columns}")

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(sum(self.input_dims), self.output_dim), name="embeddings",
            initializer=self.embeddings_initializer)

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            indices = ops.concatenate([ops.cast(x, "int64") for x in inputs],
                                      axis=-1)
        else:
            indices = ops.cast(inputs, "int64")
            if self.columns is not None:
                indices = ops.take(indices, self.columns, axis=1)
        vectors = ops.take(self.embeddings, indices + self.offsets, axis=0)
        return ops.reshape(vectors, (-1, len(self.input_dims) * self.output_dim))

    def compute_output_shape(self, input_shape):
        batch = (input_shape[0][0] if isinstance(input_shape[0], (list, tuple))
                 else input_shape[0])
        return (batch, len(self.input_dims) * self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "input_dims": list(self.input_dims),
            "output_dim": self.output_dim,
            "columns": self.columns,
            "embeddings_initializer": initializers.serialize(
                self.embeddings_initializer),
        }
