"""One-hot encoding of a block of categorical indices."""

import numpy as np
from keras import layers
from keras import ops
from keras import saving


@saving.register_keras_serializable(package="kmtl")
class OneHotBlock(layers.Layer):
    """The one-hot encodings of several categorical features, side by side.

    Column `i` of the input holds feature `i`'s index in `[0, input_dims[i])`;
    the output is its one-hot vector of width `input_dims[i]`, the features'
    vectors concatenated in column order (the same as one
    `keras.layers.CategoryEncoding(output_mode="one_hot")` per feature).

    Args:
        input_dims: list of int. Each feature's number of indices.

    Input shape:
        `(batch, len(input_dims))` integers.

    Output shape:
        `(batch, sum(input_dims))` floats, one 1 per feature.

    Raises:
        ValueError: empty `input_dims` or a non-positive size.

    Examples:
        >>> OneHotBlock([2, 3])(np.array([[1, 0]])).numpy().tolist()
        [[0.0, 1.0, 1.0, 0.0, 0.0]]
    """

    def __init__(self, input_dims, **kwargs):
        super().__init__(**kwargs)
        input_dims = [int(d) for d in input_dims]
        if not input_dims or min(input_dims) < 1:
            raise ValueError(f"input_dims must be positive sizes. Received: "
                             f"input_dims={input_dims}")
        self.input_dims = input_dims
        self.offsets = np.cumsum([0] + input_dims[:-1]).astype("int64")

    def call(self, inputs):
        indices = ops.cast(inputs, "int64") + self.offsets
        # The features' ranges do not overlap, so the maximum over features of
        # their one-hot rows is their concatenation.
        return ops.max(ops.one_hot(indices, sum(self.input_dims),
                                   dtype=self.compute_dtype), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], sum(self.input_dims))

    def get_config(self):
        return {**super().get_config(), "input_dims": list(self.input_dims)}
