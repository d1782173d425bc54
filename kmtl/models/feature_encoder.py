"""The input side of a kmtl model: raw feature inputs and their preprocessing.

Preprocessing lives in the model, so a saved or exported model takes raw values:
numbers (NaN for missing) and strings or integer codes.

- numeric features are concatenated, normalized with a `keras.layers.Normalization`
  holding the training mean and variance, and passed through `ImputeMissing`
  (a NaN becomes the training mean, plus a 0/1 missing indicator);
- each categorical feature goes through a `StringLookup` / `IntegerLookup` with
  its training vocabulary and one out-of-vocabulary index (unseen categories
  share it), then an embedding (default; features with the same embedding size
  share one `StackedEmbedding` table) or a one-hot encoding.
"""

import keras

from kmtl.errors import ConfigError
from kmtl.layers import ImputeMissing
from kmtl.layers import StackedEmbedding

CATEGORICAL_ENCODINGS = ("embedding", "one_hot")


def feature_inputs(features):
    """One `keras.Input` of shape `(batch, 1)` per feature, keyed by name."""
    return {
        f.name: keras.Input(shape=(1,), dtype=f.dtype, name=f.name)
        for f in features
    }


def encode_features(features, inputs, categorical_encoding="embedding",
                    embedding_dim=None):
    """Preprocesses raw inputs into one `(batch, d)` float tensor.

    Args:
        features: list of fitted `kmtl.features.Feature`.
        inputs: dict of Keras inputs from `feature_inputs`.
        categorical_encoding: `"embedding"` or `"one_hot"`.
        embedding_dim: int, or None for each feature's rule-of-thumb size
            (`Feature.embedding_dim`).

    Raises:
        ConfigError: unknown encoding, or features that were not fitted.
    """
    if categorical_encoding not in CATEGORICAL_ENCODINGS:
        raise ConfigError(
            f"model.categorical_encoding: unknown value {categorical_encoding!r}. "
            f"Use one of {CATEGORICAL_ENCODINGS}."
        )
    parts = []
    numeric = [f for f in features if f.kind == "numeric"]
    if numeric:
        if any(f.mean is None for f in numeric):
            raise ConfigError("Numeric features must be fitted (Feature.fit) first.")
        stacked = (
            keras.layers.Concatenate(name="numeric_features")(
                [inputs[f.name] for f in numeric])
            if len(numeric) > 1 else inputs[numeric[0].name]
        )
        normalized = keras.layers.Normalization(
            mean=[f.mean for f in numeric], variance=[f.variance for f in numeric],
            name="numeric_normalization")(stacked)
        parts.append(ImputeMissing(name="numeric_impute")(normalized))
    categorical = [f for f in features if f.kind == "categorical"]
    if any(f.vocabulary is None for f in categorical):
        raise ConfigError("Categorical features must be fitted (Feature.fit) first.")
    one_hot = categorical_encoding == "one_hot"
    indices = {}
    for feature in categorical:
        lookup_cls = (keras.layers.IntegerLookup if feature.dtype == "int64"
                      else keras.layers.StringLookup)
        lookup = lookup_cls(
            vocabulary=feature.vocabulary, num_oov_indices=1, mask_token=None,
            output_mode="one_hot" if one_hot else "int",
            name=f"{feature.name}_lookup")
        indices[feature.name] = lookup(inputs[feature.name])
    if one_hot:
        parts.extend(indices.values())
    else:
        # Features that share an embedding size share one table.
        by_dim = {}
        for feature in categorical:
            dim = embedding_dim or feature.embedding_dim
            by_dim.setdefault(dim, []).append(feature)
        for dim, group in by_dim.items():
            parts.append(StackedEmbedding(
                [len(f.vocabulary) + 1 for f in group], dim,
                name=f"embedding_{dim}")([indices[f.name] for f in group]))
    if len(parts) == 1:
        return parts[0]
    return keras.layers.Concatenate(name="encoded_features")(parts)
