"""Masked mean and max pooling of a sequence of vectors."""

from keras import layers
from keras import ops
from keras import saving

POOLINGS = ("mean", "max", "mean_max")
"""`SequencePooling` modes: the masked mean, the masked maximum, or both side
by side."""


@saving.register_keras_serializable(package="kmtl")
class SequencePooling(layers.Layer):
    """Pools a sequence of vectors into one vector per row, over the positions
    the mask keeps (the tokens, not the padding).

    The mask comes from the previous layer (`keras.layers.Embedding(...,
    mask_zero=True)`) or as the `mask` argument; without one every position
    counts. A row without any kept position pools to zeros (for the mean and
    for the maximum alike), so an empty text is a zero vector.

    Args:
        mode: str, one of `POOLINGS`: `"mean"` (default), `"max"` or
            `"mean_max"` (the mean, then the maximum).

    Input shape:
        `(batch, steps, dim)`, and a `(batch, steps)` boolean mask.

    Output shape:
        `(batch, dim)`, or `(batch, 2 * dim)` for `"mean_max"`.

    Raises:
        ValueError: an unknown mode.

    Examples:
        >>> x = np.array([[[1.0, -4.0], [3.0, 2.0], [9.0, 9.0]]])
        >>> mask = np.array([[True, True, False]])
        >>> SequencePooling("mean_max")(x, mask=mask).numpy().tolist()
        [[2.0, -1.0, 3.0, 2.0]]
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLINGS:
            raise ValueError(f"mode must be one of {POOLINGS}. Received: "
                             f"mode={mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        keep = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)
        parts = []
        if self.mode in ("mean", "mean_max"):
            count = ops.maximum(ops.sum(keep, axis=1), 1.0)
            parts.append(ops.sum(inputs * keep, axis=1) / count)
        if self.mode in ("max", "mean_max"):
            lowest = ops.convert_to_tensor(-3e4 if inputs.dtype == "float16"
                                           else -3e38, inputs.dtype)
            top = ops.max(ops.where(keep > 0, inputs, lowest), axis=1)
            any_kept = ops.sum(keep, axis=1) > 0
            parts.append(ops.where(any_kept, top, ops.zeros_like(top)))
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] * (2 if self.mode == "mean_max" else 1)
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
