"""Categorical features: strings or integer codes, looked up and embedded inside
the model."""

import math

import keras
import numpy as np
import pandas as pd

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features.base import MISSING_INT
from kmtl.features.base import MISSING_STRING
from kmtl.features.base import Feature
from kmtl.features.base import register
from kmtl.layers import OneHotBlock
from kmtl.layers import StackedEmbedding

CATEGORICAL_ENCODINGS = ("embedding", "one_hot")
"""How categorical features enter the model (`build_model`'s
`categorical_encoding`)."""


@register("categorical")
class CategoricalFeature(Feature):
    """A category column: strings (`StringLookup`) or integer codes
    (`IntegerLookup`).

    A missing string is the category `""` and a missing integer code is -1,
    categories like any other; a value not seen in training maps to the one
    out-of-vocabulary index. In the model each feature goes through its lookup
    (`<input_name>_lookup`) with the training vocabulary, then an embedding (default;
    features with the same embedding size share one `StackedEmbedding` table,
    `embedding_<dim>`) or a one-hot encoding.

    Args:
        name: str. The column name (the input is `input_name(name)`).
        kind: `"categorical"` or None.
        dtype: `"string"` (default) or `"int64"`.
        vocabulary: list. The training categories, most frequent first (`fit`).

    Input shape:
        `(batch, 1)` string or int64 per feature.

    Output shape:
        `(batch, dim)` per embedding table (`dim` per feature of the table), or
        `(batch, len(vocabulary) + 1)` per feature with `one_hot`.

    Raises:
        ConfigError: a dtype other than string or int64.

    Examples:
        >>> frame = pd.DataFrame({"island": ["Dream", "Biscoe", "Dream", None]})
        >>> Feature("island", "categorical").fit(frame).vocabulary
        ['Dream', '', 'Biscoe']
    """

    dtypes = ("string", "int64")
    position = 1

    def __init__(self, name, kind=None, dtype=None, vocabulary=None):
        super().__init__(name, kind, dtype)
        self.vocabulary = vocabulary

    @property
    def fitted(self):
        return self.vocabulary is not None

    @property
    def embedding_dim(self):
        """Google's rule of thumb: about 6 * categories ** 0.25, at most 16."""
        return min(16, math.ceil(6 * (len(self.vocabulary) + 1) ** 0.25))

    def convert(self, frame):
        """UTF-8 bytes `(rows,)` (missing: `b""`; integral floats lose their
        `.0`), or int64 codes (missing: -1).

        Raises:
            DataError: the column is missing, or an int64 column holds a value
                that is not an integer.
        """
        self._check_column(frame)
        if self.dtype == "int64":
            column = frame[self.name]
            numbers = pd.to_numeric(column, errors="coerce")
            bad = numbers.notna() & (numbers != numbers.round())
            if bad.any() or (numbers.isna() & column.notna()).any():
                value = column[bad | (numbers.isna() & column.notna())].iloc[0]
                if isinstance(value, np.generic):
                    value = value.item()
                raise DataError(
                    f"Feature '{self.name}' has dtype int64 but holds non-integer "
                    f"values such as {value!r}. Declare dtype: string."
                )
            return numbers.fillna(MISSING_INT).to_numpy(dtype="int64")
        codes, text = self.factorize(frame)
        return text[codes]

    def unseen_share(self, frame):
        """The share of `frame`'s non-missing values outside the vocabulary
        (None before `fit`)."""
        if self.vocabulary is None:
            return None
        values = self.convert(frame)
        missing = MISSING_INT if self.dtype == "int64" else MISSING_STRING.encode()
        present = values[values != missing]
        if not present.size:
            return None
        known = (set(self.vocabulary) if self.dtype == "int64"
                 else {v.encode("utf-8") for v in self.vocabulary})
        return float(1.0 - pd.Series(present).isin(known).mean())

    def fit(self, frame, max_vocabulary=None, min_frequency=1):
        """The vocabulary: categories seen at least `min_frequency` times, most
        frequent first (ties in sorted order), at most `max_vocabulary`."""
        values = self.convert(frame)
        uniques, counts = np.unique(values, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        vocab = [v for v, c in zip(uniques[order], counts[order])
                 if c >= min_frequency][:max_vocabulary or None]
        self.vocabulary = [int(v) for v in vocab] if self.dtype == "int64" else [
            bytes(v).decode("utf-8") for v in vocab
        ]
        return self

    def _lookup_layer(self):
        lookup_cls = (keras.layers.IntegerLookup if self.dtype == "int64"
                      else keras.layers.StringLookup)
        return lookup_cls(vocabulary=self.vocabulary, num_oov_indices=1,
                          mask_token=None, name=f"{self.input_name}_lookup")

    def indices(self, frame):
        """int64 `(rows,)`: each value's lookup index, as the feature's
        `StringLookup` / `IntegerLookup` gives it: `1 + ` its position in the
        vocabulary, 0 for a value not in it. Each distinct value is looked up
        once."""
        if self.dtype == "int64":
            values = self.convert(frame)
            return pd.Index(self.vocabulary, dtype="int64").get_indexer(
                values).astype("int64") + 1
        codes, text = self.factorize(frame)
        positions = {v.encode("utf-8"): i + 1 for i, v in enumerate(self.vocabulary)}
        found = np.array([positions.get(v, 0) for v in text], dtype="int64")
        return found[codes]

    @classmethod
    def _check_fitted(cls, features):
        if not all(f.fitted for f in features):
            raise ConfigError(
                "Categorical features must be fitted (Feature.fit) first.")

    @classmethod
    def encode(cls, features, frame):
        """int64 `(rows, features)`: the lookup indices (`indices`)."""
        cls._check_fitted(features)
        return np.stack([f.indices(frame) for f in features], axis=1)

    @classmethod
    def preprocess(cls, features, inputs):
        """Each feature's lookup (`<input_name>_lookup`, its training
        vocabulary and one out-of-vocabulary index 0), concatenated
        (`categorical_indices`, the block).

        Raises:
            ConfigError: a feature that is not fitted.
        """
        cls._check_fitted(features)
        indices = [f._lookup_layer()(inputs[f.input_name]) for f in features]
        if len(indices) == 1:
            return indices[0]
        return keras.layers.Concatenate(name=cls.block_layer(features))(indices)

    @classmethod
    def block_layer(cls, features):
        if len(features) == 1:
            return f"{features[0].input_name}_lookup"
        return "categorical_indices"

    @classmethod
    def embed(cls, features, block, categorical_encoding="embedding",
              embedding_dim=None, **options):
        """Embeddings (features with the same size share one
        `StackedEmbedding` table, `embedding_<dim>`) or one-hot vectors
        (`OneHotBlock`, `categorical_one_hot`).

        Args:
            categorical_encoding: `"embedding"` (default) or `"one_hot"`.
            embedding_dim: int, or None for each feature's rule-of-thumb size
                (`embedding_dim`).

        Raises:
            ConfigError: unknown encoding.
        """
        if categorical_encoding not in CATEGORICAL_ENCODINGS:
            raise ConfigError(
                f"model.categorical_encoding: unknown value "
                f"{categorical_encoding!r}. Use one of {CATEGORICAL_ENCODINGS}."
            )
        if not features:
            return []
        sizes = [len(f.vocabulary) + 1 for f in features]
        if categorical_encoding == "one_hot":
            return [OneHotBlock(sizes, name="categorical_one_hot")(block)]
        # Features that share an embedding size share one table.
        by_dim = {}
        for column, feature in enumerate(features):
            by_dim.setdefault(embedding_dim or feature.embedding_dim,
                              []).append(column)
        return [
            StackedEmbedding([sizes[c] for c in columns], dim,
                             columns=None if len(by_dim) == 1 else columns,
                             name=f"embedding_{dim}")(block)
            for dim, columns in by_dim.items()
        ]

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary}
