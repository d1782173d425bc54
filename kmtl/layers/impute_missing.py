"""Mean imputation of missing numeric values, with missing indicators."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class ImputeMissing(keras.layers.Layer):
    """Replaces NaN by a fill value and appends one 0/1 missing indicator per column.

    An infinite value (+-inf, or a number beyond float32's range sent to a
    float32 input) is missing too: training refuses such values at the edge
    (`kmtl.features.NumericFeature.convert`), and at serving time imputing
    them keeps the outputs finite instead of NaN.

    Placed after a `keras.layers.Normalization`, a fill value of 0 is the training
    mean, so a missing numeric value is imputed by its mean and the indicator lets
    the model learn what missingness itself means (the usual "mean + indicator"
    treatment; e.g. scikit-learn's `SimpleImputer(add_indicator=True)`).

    A column that had no missing value in training never sets its indicator
    while training, so the weights that read the indicator stay untrained; with
    `indicators`, such a column's indicator is always 0, and a NaN there at
    serving time is plain mean imputation rather than a jump by untrained
    weights. The output width stays `2 * features`, unless `drop_unused`
    leaves such always-0 indicators out.

    Args:
        fill_value: float, default 0.0.
        indicators: list of bool (one per column) or None (every column). The
            columns whose indicator may be 1.
        drop_unused: bool, default False. Leave out the indicators that
            `indicators` keeps at 0 (they carry nothing, and cost the next
            layer's weights and time).

    Input shape:
        `(batch, features)` floats, NaN where missing.

    Output shape:
        `(batch, 2 * features)`: the filled values, then the indicators; with
        `drop_unused`, `(batch, features + sum(indicators))`.

    Raises:
        ValueError: when built, `indicators` does not have one entry per input
            column.

    Examples:
        >>> ImputeMissing()(np.array([[1.0, np.nan]])).numpy().tolist()
        [[1.0, 0.0, 0.0, 1.0]]
    """

    def __init__(self, fill_value=0.0, indicators=None, drop_unused=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.fill_value = float(fill_value)
        self.indicators = None if indicators is None else [bool(i) for i in indicators]
        self.drop_unused = bool(drop_unused)

    def build(self, input_shape):
        if self.indicators is not None and len(self.indicators) != input_shape[-1]:
            raise ValueError(
                f"ImputeMissing: indicators has {len(self.indicators)} entries for "
                f"{input_shape[-1]} columns. Give one bool per column.")

    def call(self, inputs):
        missing = ops.logical_not(ops.isfinite(inputs))
        filled = ops.where(missing, ops.cast(self.fill_value, inputs.dtype), inputs)
        flags = ops.cast(missing, inputs.dtype)
        if self.indicators is not None and not all(self.indicators):
            if self.drop_unused:
                kept = [i for i, used in enumerate(self.indicators) if used]
                if not kept:
                    return filled
                flags = ops.take(flags, kept, axis=-1)
            else:
                flags = flags * ops.cast(self.indicators, inputs.dtype)
        return ops.concatenate([filled, flags], axis=-1)

    def compute_output_shape(self, input_shape):
        if input_shape[-1] is None:
            return (*input_shape[:-1], None)
        flags = input_shape[-1]
        if self.drop_unused and self.indicators is not None:
            flags = sum(self.indicators)
        return (*input_shape[:-1], input_shape[-1] + flags)

    def get_config(self):
        return {**super().get_config(), "fill_value": self.fill_value,
                "indicators": self.indicators, "drop_unused": self.drop_unused}
