"""Numeric features: numbers, normalized and mean-imputed inside the model."""

import keras
import numpy as np
import pandas as pd

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features.base import Feature
from kmtl.features.base import register
from kmtl.layers import ImputeMissing


@register("numeric")
class NumericFeature(Feature):
    """A number column, float32; NaN (or empty) where missing.

    In the model, all numeric features share one block: their inputs are
    concatenated (`numeric_features`), normalized with the training mean and
    variance (`keras.layers.Normalization`, `numeric_normalization`), and a NaN
    becomes 0 = the training mean, with a 0/1 missing indicator per feature
    (`kmtl.layers.ImputeMissing`, `numeric_impute`); the indicator stays 0 for a
    feature that had no missing value in training.

    Args:
        name: str. The column name (the input is `input_name(name)`).
        kind: `"numeric"` or None.
        dtype: `"float32"` (default; the only one).
        mean: float. The training mean (`fit`).
        variance: float. The training variance (`fit`); a variance of 0 (a
            constant column) is stored as 1.
        missing: bool or None. Whether the training column had missing values
            (`fit`; None: unknown, the indicator is kept).

    Input shape:
        `(batch, 1)` float32 per feature.

    Output shape:
        `(batch, 2 * features)` for the block: normalized values, then indicators.

    Raises:
        ConfigError: a dtype other than float32.

    Examples:
        >>> frame = pd.DataFrame({"x": [1.0, np.nan, 3.0]})
        >>> feature = Feature("x", "numeric").fit(frame)
        >>> feature.mean, feature.variance, feature.missing
        (2.0, 1.0, True)
    """

    dtypes = ("float32",)
    position = 0

    def __init__(self, name, kind=None, dtype=None, mean=None, variance=None,
                 missing=None):
        super().__init__(name, kind, dtype)
        self.mean = mean
        self.variance = variance
        self.missing = missing

    @property
    def fitted(self):
        return self.mean is not None

    def convert(self, frame):
        """float32 `(rows,)`; booleans become 0/1, missing values NaN.

        Raises:
            DataError: the column is missing or a value is not a number.
        """
        self._check_column(frame)
        column = frame[self.name]
        if pd.api.types.is_bool_dtype(column):
            return column.to_numpy(dtype="float32")
        numbers = pd.to_numeric(column, errors="coerce")
        bad = numbers.isna() & column.notna()
        if bad.any():
            row = bad.to_numpy().nonzero()[0][0]
            raise DataError(
                f"Feature '{self.name}' is numeric but row {row} holds "
                f"{column.iloc[row]!r}. Declare it categorical, or clean the "
                f"column (missing values may be empty or NaN)."
            )
        return numbers.to_numpy(dtype="float32")

    def fit(self, frame, max_vocabulary=None, min_frequency=1):
        """The mean and population variance of the non-missing values (0 and 1
        without any; variance 1 for a constant column), and whether any value
        is missing. The vocabulary options do not apply."""
        values = self.convert(frame)
        finite = values[~np.isnan(values)]
        self.missing = bool(finite.size < values.size)
        self.mean = float(finite.mean()) if finite.size else 0.0
        self.variance = float(finite.var()) if finite.size > 1 else 1.0
        if not self.variance > 0:
            self.variance = 1.0
        return self

    @classmethod
    def preprocess(cls, features, inputs, **options):
        """One block for all numeric features: concatenate, normalize, impute.

        Raises:
            ConfigError: a feature that is not fitted.
        """
        if not features:
            return []
        if not all(f.fitted for f in features):
            raise ConfigError("Numeric features must be fitted (Feature.fit) first.")
        stacked = (
            keras.layers.Concatenate(name="numeric_features")(
                [inputs[f.input_name] for f in features])
            if len(features) > 1 else inputs[features[0].input_name]
        )
        normalized = keras.layers.Normalization(
            mean=[f.mean for f in features], variance=[f.variance for f in features],
            name="numeric_normalization")(stacked)
        # An indicator only where training had missing values (None: unknown).
        return [ImputeMissing(
            indicators=[f.missing is not False for f in features],
            name="numeric_impute")(normalized)]

    def get_config(self):
        return {**super().get_config(), "mean": self.mean,
                "variance": self.variance, "missing": self.missing}
