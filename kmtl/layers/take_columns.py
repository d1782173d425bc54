"""The chosen columns of a matrix."""

from keras import layers
from keras import ops
from keras import saving


@saving.register_keras_serializable(package="kmtl")
class TakeColumns(layers.Layer):
    """Keeps the given columns of a `(batch, k)` matrix, in the given order.

    Args:
        columns: list of int, each in `[0, k)`.

    Input shape:
        `(batch, k)`.

    Output shape:
        `(batch, len(columns))`.

    Raises:
        ValueError: empty `columns` or a negative column.

    Examples:
        >>> TakeColumns([2, 0])(np.array([[1.0, 2.0, 3.0]])).numpy().tolist()
        [[3.0, 1.0]]
    """

    def __init__(self, columns, **kwargs):
        super().__init__(**kwargs)
        columns = [int(c) for c in columns]
        if not columns or min(columns) < 0:
            raise ValueError(f"columns must be a non-empty list of column indices. "
                             f"Received: columns={columns}")
        self.columns = columns

    def call(self, inputs):
        return ops.take(inputs, self.columns, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.columns))

    def get_config(self):
        return {**super().get_config(), "columns": list(self.columns)}
