"""Input features: their kinds, the statistics fitted on the training split, and the
conversion of a DataFrame to the raw arrays the model takes.

Kinds:
- `numeric`: float32. Missing values (NaN) are allowed; the model imputes the
  training mean and adds a 0/1 missing indicator (see `kmtl.layers.ImputeMissing`).
- `categorical`: strings (`dtype="string"`, looked up with `StringLookup`) or
  integer codes (`dtype="int64"`, `IntegerLookup`). Missing strings become the
  empty string `""`, a category like any other; values not seen in training map to
  the out-of-vocabulary index.
- `text`: reserved for free text (tokenized inside the model); not built yet.
"""

import math

import numpy as np
import pandas as pd

from kmtl.errors import ConfigError
from kmtl.errors import DataError

FEATURE_KINDS = ("numeric", "categorical", "text")
MISSING_STRING = ""
MISSING_INT = -1


class Feature:
    """One raw input column of the model.

    Args:
        name: str. The column name and the model's input key.
        kind: str. `"numeric"` or `"categorical"` (`"text"` is reserved).
        dtype: str. The raw dtype the model takes: `"float32"` for numeric,
            `"string"` or `"int64"` for categorical. Inferred when None.
        mean, variance: float. Training statistics of a numeric feature.
        missing: bool or None. Whether the training data of a numeric feature
            had missing values (set by `fit`; None: unknown). Without any, its
            missing indicator stays 0 (see `kmtl.layers.ImputeMissing`).
        vocabulary: list. Training categories of a categorical feature, most
            frequent first.

    Raises:
        ConfigError: unknown kind or dtype.
    """

    def __init__(self, name, kind, dtype=None, mean=None, variance=None,
                 vocabulary=None, missing=None):
        if kind not in FEATURE_KINDS:
            raise ConfigError(
                f"Feature '{name}': unknown kind {kind!r}. Use one of "
                f"{FEATURE_KINDS[:2]}."
            )
        if kind == "text":
            raise ConfigError(
                f"Feature '{name}': text features are not supported yet; declare "
                f"it categorical or drop it."
            )
        if dtype is None:
            dtype = "float32" if kind == "numeric" else "string"
        allowed = ("float32",) if kind == "numeric" else ("string", "int64")
        if dtype not in allowed:
            raise ConfigError(
                f"Feature '{name}': dtype {dtype!r} does not fit kind {kind!r}; use "
                f"one of {allowed}."
            )
        self.name = name
        self.kind = kind
        self.dtype = dtype
        self.mean = mean
        self.variance = variance
        self.vocabulary = vocabulary
        self.missing = missing

    def fit(self, frame, max_vocabulary=None, min_frequency=1):
        """Fits the feature's statistics on the training split."""
        values = self.convert(frame)
        if self.kind == "numeric":
            finite = values[~np.isnan(values)]
            self.missing = bool(finite.size < values.size)
            self.mean = float(finite.mean()) if finite.size else 0.0
            self.variance = float(finite.var()) if finite.size > 1 else 1.0
            if not self.variance > 0:
                self.variance = 1.0
        else:
            uniques, counts = np.unique(values, return_counts=True)
            order = np.argsort(-counts, kind="stable")
            vocab = [v for v, c in zip(uniques[order], counts[order])
                     if c >= min_frequency][:max_vocabulary or None]
            self.vocabulary = [int(v) for v in vocab] if self.dtype == "int64" else [
                bytes(v).decode("utf-8") for v in vocab
            ]
        return self

    def _check_column(self, frame):
        if self.name not in frame.columns:
            raise DataError(
                f"Feature '{self.name}' not found in the data. Available columns: "
                f"{list(frame.columns)}. Fix the feature list or the data."
            )

    def convert(self, frame):
        """The column of `frame` as the model's raw array `(rows,)`.

        Raises:
            DataError: the column is missing, or a numeric column holds text.
        """
        self._check_column(frame)
        column = frame[self.name]
        if self.kind == "numeric":
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
        if self.dtype == "int64":
            numbers = pd.to_numeric(column, errors="coerce")
            bad = numbers.notna() & (numbers != numbers.round())
            if bad.any() or (numbers.isna() & column.notna()).any():
                raise DataError(
                    f"Feature '{self.name}' has dtype int64 but holds non-integer "
                    f"values such as {column[bad | numbers.isna()].iloc[0]!r}. "
                    f"Declare dtype: string."
                )
            return numbers.fillna(MISSING_INT).to_numpy(dtype="int64")
        codes, text = self.factorize(frame)
        return text[codes]

    def factorize(self, frame):
        """A string feature as `(codes, text)`: int32 codes `(rows,)` into the
        UTF-8 bytes array `text` of its distinct values, missing values last.

        Each distinct value is converted once, so a 200k-row column takes
        milliseconds; `text[codes]` is the raw column.
        """
        self._check_column(frame)
        codes, uniques = pd.factorize(frame[self.name], use_na_sentinel=True)
        codes[codes < 0] = len(uniques)
        text = [_category_text(v).encode("utf-8") for v in uniques]
        text.append(MISSING_STRING.encode("utf-8"))
        return codes.astype("int32"), np.array(text, dtype=object)

    @property
    def embedding_dim(self):
        """Google's rule of thumb: about 6 * categories ** 0.25, at most 16."""
        return min(16, math.ceil(6 * (len(self.vocabulary) + 1) ** 0.25))

    def get_config(self):
        return {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "mean": self.mean,
            "variance": self.variance,
            "vocabulary": self.vocabulary,
            "missing": self.missing,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"Feature(name={self.name!r}, kind={self.kind!r}, dtype={self.dtype!r})"


def _category_text(value):
    """A category as text; integral floats (codes read as floats) lose the `.0`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def infer_kind(column):
    """`("numeric", "float32")` for numbers, else categorical with its dtype."""
    if pd.api.types.is_bool_dtype(column):
        return "categorical", "int64"
    if pd.api.types.is_numeric_dtype(column):
        return "numeric", "float32"
    return "categorical", "string"


def resolve_features(frame, numeric=None, categorical=None, exclude=()):
    """Builds the feature list from declarations and the training frame.

    Args:
        frame: the training DataFrame.
        numeric: list of str, or None. Columns declared numeric.
        categorical: list of str, or None. Columns declared categorical; integer
            columns keep integer codes (`IntegerLookup`), others become strings.
        exclude: columns never used as features (targets, ids). When neither
            `numeric` nor `categorical` is given, every other column is a feature
            of the inferred kind.

    Returns:
        A list of unfitted `Feature`s, in the frame's column order for inferred
        ones and in declaration order otherwise.

    Raises:
        DataError: a declared column is absent from the frame.
    """
    declared = list(numeric or []) + list(categorical or [])
    missing = [c for c in declared if c not in frame.columns]
    if missing:
        raise DataError(
            f"Feature column(s) {missing} not found in the data. Available columns: "
            f"{list(frame.columns)}. Fix `features` in the config."
        )
    overlap = set(declared) & set(exclude)
    if overlap:
        raise ConfigError(
            f"Column(s) {sorted(overlap)} are declared as features and also used as "
            f"task targets. A target cannot be an input; remove it from `features`."
        )
    features = []
    if declared:
        for name in numeric or []:
            features.append(Feature(name, "numeric"))
        for name in categorical or []:
            column = frame[name]
            integer = (pd.api.types.is_integer_dtype(column)
                       or pd.api.types.is_bool_dtype(column))
            dtype = "int64" if integer else "string"
            features.append(Feature(name, "categorical", dtype))
        return features
    for name in frame.columns:
        if name in exclude:
            continue
        kind, dtype = infer_kind(frame[name])
        features.append(Feature(name, kind, dtype))
    if not features:
        raise DataError("No feature columns are left after removing the targets.")
    return features
