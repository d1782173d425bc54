"""Numeric features: numbers, normalized and mean-imputed inside the model."""

import keras
import numpy as np
import pandas as pd

from kmtl._checks import FLOAT32_MAX
from kmtl._checks import non_finite
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features.base import Feature
from kmtl.features.base import register
from kmtl.layers import ImputeMissing
from kmtl.layers import PeriodicEmbedding
from kmtl.layers import PiecewiseLinearEncoding
from kmtl.layers import TakeColumns
from kmtl.layers import quantile_bin_edges

NUMERIC_ENCODINGS = ("plain", "piecewise_linear", "periodic")
"""How numeric features enter the model (`build_model`'s `numeric_encoding`,
or a feature's own `encoding`): the normalized value (`plain`), its piecewise
linear encoding on quantile bins (`piecewise_linear`) or periodic embedding
(`periodic`), after Gorishniy, Rubachev and Babenko, "On Embeddings for
Numerical Features in Tabular Deep Learning", NeurIPS 2022."""
NUMERIC_BINS = 16
"""The largest number of quantile bins `fit` gives a feature (fewer when the
column has few distinct values), for the `piecewise_linear` encoding."""


@register("numeric")
class NumericFeature(Feature):
    """A number column, float32; NaN (or empty) where missing.

    In the model, all numeric features share one block: their inputs are
    concatenated (`numeric_features`), normalized with the training mean and
    variance (`keras.layers.Normalization`, `numeric_normalization`), and a NaN
    becomes 0 = the training mean, with a 0/1 missing indicator per feature
    (`kmtl.layers.ImputeMissing`, `numeric_impute`) for a feature that had
    missing values in training (no column for the others).

    Args:
        name: str. The column name (the input is `input_name(name)`).
        kind: `"numeric"` or None.
        dtype: `"float32"` (default; the only one).
        mean: float. The training mean (`fit`).
        variance: float. The training variance (`fit`); a variance of 0 (a
            constant column) is stored as 1.
        missing: bool or None. Whether the training column had missing values
            (`fit`; None: unknown, the indicator is kept).
        encoding: str or None. The feature's own encoding, one of
            `NUMERIC_ENCODINGS`; None (default): the model's
            (`build_model(numeric_encoding=...)`).
        edges: list of float. The quantile bin edges of the normalized
            training values (`fit`, at most `NUMERIC_BINS` bins), for the
            `piecewise_linear` encoding.

    Input shape:
        `(batch, 1)` float32 per feature.

    Output shape:
        `(batch, features + indicators)` for the block with the `plain`
        encoding: normalized values, then the indicators of the features
        that had missing values in training; each feature with another encoding
        puts its encoding (`PiecewiseLinearEncoding`: one column per bin;
        `PeriodicEmbedding`: 24 columns) in place of its value.

    Raises:
        ConfigError: a dtype other than float32, or an unknown encoding.

    Examples:
        >>> frame = pd.DataFrame({"x": [1.0, np.nan, 3.0]})
        >>> feature = Feature("x", "numeric").fit(frame)
        >>> feature.mean, feature.variance, feature.missing
        (2.0, 1.0, True)
    """

    dtypes = ("float32",)
    position = 0

    def __init__(self, name, kind=None, dtype=None, mean=None, variance=None,
                 missing=None, encoding=None, edges=None):
        super().__init__(name, kind, dtype)
        if encoding is not None and encoding not in NUMERIC_ENCODINGS:
            raise ConfigError(
                f"Feature '{name}': unknown encoding {encoding!r}. Use one of "
                f"{NUMERIC_ENCODINGS}, or None for the model's.")
        self.mean = mean
        self.variance = variance
        self.missing = missing
        self.encoding = encoding
        self.edges = edges

    @property
    def fitted(self):
        return self.mean is not None

    def convert(self, frame):
        """float32 `(rows,)`; booleans become 0/1, missing values NaN.

        Raises:
            DataError: the column is missing, a value is not a number, or a
                number is not finite in float32 (inf, or beyond +-3.4e38).
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
        flagged = non_finite(numbers.to_numpy(dtype="float64"))
        if flagged.any():
            rows = flagged.nonzero()[0]
            raise DataError(
                f"Feature '{self.name}' has {len(rows):,} value(s) that are not "
                f"finite float32 numbers (inf, or beyond +-3.4e38), first in "
                f"row {rows[0]}: {float(numbers.iloc[rows[0]])!r}. Clean the "
                f"column, or set "
                f"data.non_finite: impute (treat them as missing) or drop (drop "
                f"those rows); in Python, kmtl.data.handle_non_finite.")
        return numbers.to_numpy(dtype="float32")

    def fit(self, frame, max_vocabulary=None, min_frequency=1):
        """The mean and population variance of the non-missing values (0 and 1
        without any; variance 1 for a constant column), and whether any value
        is missing. The vocabulary options do not apply.

        Both are computed in float64 and must fit in float32 (the model
        normalizes in float32).

        Raises:
            DataError: the column is missing or not numeric, or its spread is
                too large for float32 (values beyond about +-1.8e19 apart):
                the message names the feature and asks for a rescaled
                column.
        """
        values = self.convert(frame)
        finite = values[~np.isnan(values)].astype("float64")
        self.missing = bool(finite.size < values.size)
        self.mean = float(finite.mean()) if finite.size else 0.0
        self.variance = float(finite.var()) if finite.size > 1 else 1.0
        if not self.variance <= FLOAT32_MAX:
            raise DataError(
                f"Feature '{self.name}': its values (from {finite.min():.3g} to "
                f"{finite.max():.3g}) spread too widely for float32: their "
                f"variance {self.variance:.3g} is beyond {FLOAT32_MAX:.3g}, so "
                f"the model could not normalize them. Rescale the column (e.g. "
                f"divide it by a power of ten, or take its logarithm).")
        if not self.variance > 0:
            self.variance = 1.0
        self.edges = quantile_bin_edges(
            self.encode([self], frame)[:, 0], NUMERIC_BINS)
        return self

    @classmethod
    def _statistics(cls, features):
        if not all(f.fitted for f in features):
            raise ConfigError("Numeric features must be fitted (Feature.fit) first.")
        mean = np.array([f.mean for f in features], dtype="float32")
        variance = np.array([f.variance for f in features], dtype="float32")
        return mean, variance

    @classmethod
    def encode(cls, features, frame):
        """float32 `(rows, features)`: `(x - mean) / sqrt(variance)` as
        `keras.layers.Normalization` computes it (float32, the standard
        deviation at least `keras.config.epsilon()`); NaN where missing.

        Raises:
            DataError: a column is missing or holds a value that is not a
                finite float32, or a value so far from the training mean
                that its normalized value is not a finite float32 (e.g. 3e38
                for a feature fitted on values in [0, 1]).
        """
        mean, variance = cls._statistics(features)
        values = np.stack([f.convert(frame) for f in features], axis=1)
        std = np.maximum(np.sqrt(variance),
                         np.float32(keras.config.epsilon()))
        with np.errstate(over="ignore"):
            encoded = (values - mean) / std
        overflow = np.isinf(encoded)
        if overflow.any():
            rows, columns = overflow.nonzero()
            feature = features[columns[0]]
            raise DataError(
                f"Feature '{feature.name}': {len(rows):,} value(s) are too far "
                f"from the training values to normalize in float32, first in "
                f"row {rows[0]}: {float(values[rows[0], columns[0]])!r} (training "
                f"mean {feature.mean:.3g}, standard deviation "
                f"{float(std[columns[0]]):.3g}). Check the value, or rescale "
                f"the column.")
        return encoded

    @classmethod
    def preprocess(cls, features, inputs):
        """Concatenate (`numeric_features`), then `keras.layers.Normalization`
        with the training statistics (`numeric_normalization`, the block).

        Raises:
            ConfigError: a feature that is not fitted.
        """
        mean, variance = cls._statistics(features)
        stacked = (
            keras.layers.Concatenate(name="numeric_features")(
                [inputs[f.input_name] for f in features])
            if len(features) > 1 else inputs[features[0].input_name]
        )
        return keras.layers.Normalization(
            mean=mean.tolist(), variance=variance.tolist(),
            name=cls.block_layer(features))(stacked)

    @classmethod
    def block_layer(cls, features):
        return "numeric_normalization"

    @classmethod
    def embed(cls, features, block, numeric_encoding="plain", **options):
        """A NaN becomes 0 = the training mean, beside a 0/1 missing indicator
        per feature that had missing values in training
        (`kmtl.layers.ImputeMissing`, `numeric_impute`; a NaN in another
        feature at serving time is plain mean imputation); then each
        feature's encoding.

        With every feature `plain`, the output is `numeric_impute`'s. Else the
        plain features' values and every indicator (`numeric_plain`), then
        one block per other encoding: `PiecewiseLinearEncoding` on the
        features' fitted `edges` (`numeric_piecewise_linear`) and
        `PeriodicEmbedding` (`numeric_periodic`).

        Args:
            numeric_encoding: the default encoding, one of
                `NUMERIC_ENCODINGS` (a feature's own `encoding` wins).

        Raises:
            ConfigError: an unknown encoding, or `piecewise_linear` for a
                feature without fitted `edges`.
        """
        if numeric_encoding not in NUMERIC_ENCODINGS:
            raise ConfigError(
                f"model.numeric_encoding: unknown value {numeric_encoding!r}. "
                f"Use one of {NUMERIC_ENCODINGS}.")
        if not features:
            return []
        # An indicator only where training had missing values (None: unknown).
        indicators = [f.missing is not False for f in features]
        imputed = ImputeMissing(indicators=indicators, drop_unused=True,
                                name="numeric_impute")(block)
        groups = {}
        for column, feature in enumerate(features):
            groups.setdefault(feature.encoding or numeric_encoding,
                              []).append(column)
        if set(groups) == {"plain"}:
            return [imputed]
        count = len(features)
        kept = groups.get("plain", []) + list(range(count, count + sum(indicators)))
        parts = ([TakeColumns(kept, name="numeric_plain")(imputed)] if kept
                 else [])
        for encoding in NUMERIC_ENCODINGS[1:]:
            columns = groups.get(encoding)
            if not columns:
                continue
            values = TakeColumns(columns, name=f"numeric_{encoding}_values")(imputed)
            if encoding == "piecewise_linear":
                unfitted = [features[c].name for c in columns
                            if not features[c].edges]
                if unfitted:
                    raise ConfigError(
                        f"Numeric feature(s) {unfitted} have no bin edges: fit "
                        f"them (Feature.fit) with this version of kmtl to use "
                        f"the piecewise_linear encoding.")
                layer = PiecewiseLinearEncoding(
                    [features[c].edges for c in columns],
                    name="numeric_piecewise_linear")
            else:
                layer = PeriodicEmbedding(len(columns), name="numeric_periodic")
            parts.append(layer(values))
        return parts

    def get_config(self):
        return {**super().get_config(), "mean": self.mean,
                "variance": self.variance, "missing": self.missing,
                "encoding": self.encoding, "edges": self.edges}
