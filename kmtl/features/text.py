"""Text features: free text, vectorized with the training vocabulary and read
by a bag-of-n-grams, pooled-embedding or Transformer encoder inside the model."""

import keras
import numpy as np
import pandas as pd

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features.base import Feature
from kmtl.features.base import register
from kmtl.layers import PresetTextEncoder
from kmtl.layers import PresetTokenizer
from kmtl.layers import SequencePooling
from kmtl.layers import TakeColumns
from kmtl.layers import TokenBag
from kmtl.layers import TransformerTextEncoder

TEXT_ENCODERS = ("bag", "embedding", "transformer", "pretrained")
"""How a text feature's tokens become one vector (`TextFeature`'s `encoder`)."""
TEXT_SPLITS = ("whitespace", "character")
"""Token units: words (split on whitespace) or characters."""
TEXT_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation",
                    "none")
"""What `keras.layers.TextVectorization` does to a text before splitting it."""
MAX_SEQUENCE_LENGTH = 512
"""The longest token sequence `fit` chooses (longer texts are cut)."""
ENCODE_BATCH = 8192
"""Rows vectorized per call when `encode` computes the block."""

# The settings every feature of a vocabulary group shares.
GROUP_SETTINGS = ("encoder", "split", "ngrams", "standardize", "max_tokens",
                  "min_frequency", "dim", "tf_idf", "activation", "num_layers",
                  "num_heads", "dropout", "preset", "pooling")


def _check_settings(name, settings):
    """Raises ConfigError naming the feature for a bad setting."""
    def bad(key, expected):
        return ConfigError(f"Text feature {name!r}: {key} must be {expected}. "
                           f"Received: {key}={settings[key]!r}")

    choices = {"encoder": TEXT_ENCODERS, "split": TEXT_SPLITS,
               "standardize": TEXT_STANDARDIZE}
    for key, allowed in choices.items():
        if settings[key] not in allowed:
            raise bad(key, f"one of {allowed}")
    for key in ("ngrams", "max_tokens", "min_frequency", "dim", "num_layers",
                "num_heads"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or (
                value < 1):
            raise bad(key, "a positive integer")
    if settings["max_tokens"] < 3:
        raise bad("max_tokens", "at least 3 (padding, out-of-vocabulary and one "
                  "token)")
    if not 0 <= settings["dropout"] < 1:
        raise bad("dropout", "in [0, 1)")
    try:
        keras.activations.get(settings["activation"])
    except (ValueError, TypeError):
        raise bad("activation", "a Keras activation name such as 'relu'") from None
    if (settings["encoder"] == "pretrained") != (settings["preset"] is not None):
        raise bad("preset", "a local KerasHub preset directory with encoder "
                  "'pretrained' (and only then)")
    if settings["pooling"] not in ("mean", "cls"):
        raise bad("pooling", "'mean' or 'cls'")
    if settings["encoder"] == "transformer" and settings["dim"] % settings[
            "num_heads"]:
        raise bad("num_heads", f"a divisor of dim ({settings['dim']})")


@register("text")
class TextFeature(Feature):
    """A free-text column (a review, a title, a ticket), tokenized with its
    training vocabulary and encoded into one vector inside the model.

    Preprocessing is Keras's `keras.layers.TextVectorization`: the text is
    standardized (`standardize`), split into words or characters (`split`),
    combined into n-grams of 1 to `ngrams` units, and each n-gram becomes its
    vocabulary index (0 padding, 1 out-of-vocabulary), padded or cut to
    `sequence_length`: the feature's encoded block. A missing text is the
    empty string: no tokens. The model then reads the indices with the
    feature's encoder (`encoder`):

    - `bag` (default): the bag of n-grams (`kmtl.layers.TokenBag`: TF-IDF
      with sublinear term frequency and unit L2 norm, or 0/1 with
      `tf_idf=False`) into `Dense(dim)`: fast, and strong on reviews and
      tickets.
    - `embedding`: token embeddings of size `dim` (padding masked) pooled by
      their mean and maximum (`kmtl.layers.SequencePooling`, width `2 * dim`).
    - `transformer`: token and position embeddings and `num_layers`
      Transformer encoder blocks from KerasHub
      (`kmtl.layers.TransformerTextEncoder`), trained from scratch.
    - `pretrained`: a pretrained KerasHub model from local preset files
      (`preset`, a directory: nothing is downloaded): its tokenizer replaces
      `TextVectorization` (`kmtl.layers.PresetTokenizer`; no vocabulary is
      fitted) and its backbone, fine-tuned, gives the vector
      (`kmtl.layers.PresetTextEncoder`, width the backbone's hidden size).
      Serving the export needs `import tensorflow_text` before loading it
      (the tokenizer's ops).

    Features with the same `group` share one vocabulary (fitted on all their
    columns) and one encoder (the same weights read each column), e.g. a title
    and a review text; they must agree on every setting but `sequence_length`.

    Args:
        name: str. The column name (the input is `input_name(name)`).
        kind: `"text"` or None.
        dtype: `"string"` (default; the only one).
        group: str or None. The vocabulary group; None: the feature's own
            (its input name).
        encoder: str, one of `TEXT_ENCODERS`. Default `"bag"`.
        split: `"whitespace"` (default; words) or `"character"`.
        ngrams: int. N-grams of 1 to `ngrams` units, default 1.
        standardize: str, one of `TEXT_STANDARDIZE`. Default: lower case
            without punctuation.
        max_tokens: int. The largest vocabulary, padding and out-of-vocabulary
            included (as Keras counts it), default 20000: the most frequent
            n-grams.
        min_frequency: int. Keep n-grams found in at least this many training
            texts (document frequency, like scikit-learn's `min_df`),
            default 2.
        dim: int. The encoder's width, default 64.
        tf_idf: bool. `bag`: TF-IDF values (default) or 0/1.
        activation: str. `bag`: the dense layer's activation, a Keras name
            (default `"relu"`; `"linear"` keeps it a projection).
        num_layers: int. `transformer`: encoder blocks, default 2.
        num_heads: int. `transformer`: attention heads, default 4 (a divisor
            of `dim`).
        dropout: float in [0, 1). Dropout on the text vector (and inside the
            Transformer blocks), default 0.
        preset: str or None. `pretrained`: the local KerasHub preset
            directory (`Backbone.save_to_preset` and
            `Tokenizer.save_to_preset` output).
        pooling: str. `pretrained`: `"mean"` (default, the masked mean of the
            token vectors) or `"cls"` (the backbone's pooled output).
        sequence_length: int or None. Tokens per text; None: `fit` takes the
            longest training text's count, at most `MAX_SEQUENCE_LENGTH`.
        vocabulary: list of str. The training n-grams, in most training texts
            first (ties in sorted order), without the padding and
            out-of-vocabulary entries (`fit`).
        idf: list of float. Inverse document frequencies per index, padding
            and out-of-vocabulary included, `ln((1 + n) / (1 + df)) + 1` over
            the group's `n` training texts (`fit`; scikit-learn's smoothed
            idf).

    Input shape:
        `(batch, 1)` string per feature (a `(batch,)` string at serving).

    Output shape:
        `(batch, dim)` per feature (`(batch, 2 * dim)` for `embedding`).

    Raises:
        ConfigError: an unknown setting value (naming the feature and key).

    Examples:
        >>> frame = pd.DataFrame({"review": ["Great dress", "great fit", None]})
        >>> Feature("review", "text", min_frequency=1).fit(frame).vocabulary
        ['great', 'dress', 'fit']
    """

    dtypes = ("string",)
    position = 2

    def __init__(self, name, kind=None, dtype=None, group=None, encoder="bag",
                 split="whitespace", ngrams=1,
                 standardize="lower_and_strip_punctuation", max_tokens=20000,
                 min_frequency=2, dim=64, tf_idf=True, activation="relu",
                 num_layers=2, num_heads=4, dropout=0.0, preset=None,
                 pooling="mean", sequence_length=None, vocabulary=None, idf=None,
                 **unknown):
        super().__init__(name, kind, dtype)
        if unknown:
            raise ConfigError(
                f"Text feature {name!r}: unknown setting(s) {sorted(unknown)}. "
                f"Text features take {sorted(GROUP_SETTINGS)}, group and "
                f"sequence_length.")
        self.settings = {
            "encoder": encoder, "split": split, "ngrams": ngrams,
            "standardize": standardize, "max_tokens": max_tokens,
            "min_frequency": min_frequency, "dim": dim, "tf_idf": tf_idf,
            "activation": activation, "num_layers": num_layers,
            "num_heads": num_heads, "dropout": dropout,
            "preset": None if preset is None else str(preset), "pooling": pooling}
        _check_settings(name, self.settings)
        self.group = group or self.input_name
        self.sequence_length = sequence_length
        self._declared_length = sequence_length
        self.vocabulary = vocabulary
        self.idf = idf
        self._vectorizer = None

    def __getattr__(self, key):
        settings = self.__dict__.get("settings", {})
        if key in settings:
            return settings[key]
        raise AttributeError(key)

    @property
    def fitted(self):
        return self.vocabulary is not None and self.sequence_length is not None

    @property
    def vocabulary_size(self):
        """The number of indices: the vocabulary, padding and out-of-vocabulary."""
        return len(self.vocabulary) + 2

    # === Raw values ===

    def convert(self, frame):
        """UTF-8 bytes `(rows,)`; a missing text (None, NaN) is `b""`.

        Raises:
            DataError: the column is missing, or holds numbers or other values
                that are not text (naming the column, the value and the fix).
        """
        self._check_column(frame)
        column = frame[self.name]
        if column.notna().any() and (pd.api.types.is_numeric_dtype(column)
                                     or pd.api.types.is_bool_dtype(column)):
            raise DataError(
                f"Text feature '{self.name}' holds {column.dtype} values, not "
                f"text. Declare it numeric or categorical, or convert it to "
                f"strings (df[{self.name!r}].astype(str)).")
        present = column.dropna()
        if isinstance(column.dtype, pd.CategoricalDtype):
            present = present.astype(str)
        strange = present[~present.map(lambda v: isinstance(v, str))]
        if len(strange):
            value = strange.iloc[0]
            raise DataError(
                f"Text feature '{self.name}' holds values that are not text, such "
                f"as {value!r} ({type(value).__name__}) in row "
                f"{strange.index[0]!r}. Convert the column to strings, or leave "
                f"missing texts as None/NaN.")
        codes, text = self.factorize(frame)
        return text[codes]

    # === Fitting ===

    @classmethod
    def fit_kind(cls, features, frame, max_vocabulary=None, min_frequency=1):
        """Fits each vocabulary group on the texts of all its columns.

        `max_vocabulary` and `min_frequency` (the categorical settings of
        `features`) do not apply: a text feature has its own `max_tokens`
        and `min_frequency`.

        Raises:
            ConfigError: features of one group with different settings.
            DataError: a column without any text, or a vocabulary that comes
                out empty.
        """
        for members in _groups(features).values():
            _fit_group(members, frame)

    def fit(self, frame, max_vocabulary=None, min_frequency=1):
        """Fits this feature alone (its group's other columns are not read:
        fit a group with `kmtl.features.fit_features`)."""
        _fit_group([self], frame)
        return self

    # === Vectorization (the encoded block) ===

    def _vectorize_layer(self, name=None, ragged=False):
        """The feature's `TextVectorization` (or a preset's tokenizer): its
        sequence length, or ragged indices of any length."""
        if self.preset is not None:
            return PresetTokenizer(self.preset, self.sequence_length,
                                   dtype="int64", name=name)
        return _text_vectorization(
            self.settings, vocabulary=list(self.vocabulary), name=name,
            output_sequence_length=None if ragged else self.sequence_length,
            ragged=ragged)

    @classmethod
    def _check_fitted(cls, features):
        if not all(f.fitted for f in features):
            raise ConfigError("Text features must be fitted (Feature.fit or "
                              "kmtl.features.fit_features) first.")
        for members in _groups(features).values():
            first = members[0]
            for other in members[1:]:
                if other.vocabulary != first.vocabulary:
                    raise ConfigError(
                        f"Text features {first.name!r} and {other.name!r} share "
                        f"the group {first.group!r} but were fitted apart, with "
                        f"different vocabularies. Fit them together: "
                        f"kmtl.features.fit_features(features, frame).")

    def tokens(self, frame):
        """int64 `(rows, sequence_length)`: the vocabulary indices of each
        text, as the feature's `TextVectorization` gives them."""
        if self._vectorizer is None:
            self._vectorizer = self._vectorize_layer()
        values = self.convert(frame)
        if not len(values):
            return np.zeros((0, self.sequence_length), "int64")
        parts = [np.asarray(self._vectorizer(values[i:i + ENCODE_BATCH]))
                 for i in range(0, len(values), ENCODE_BATCH)]
        return np.concatenate(parts).astype("int64")

    @classmethod
    def encode(cls, features, frame):
        """int64 `(rows, sum of sequence lengths)`: each feature's `tokens`,
        side by side."""
        cls._check_fitted(features)
        return np.concatenate([f.tokens(frame) for f in features], axis=1)

    @classmethod
    def preprocess(cls, features, inputs):
        """Each feature's `TextVectorization` (`<input_name>_vectorize`, its
        group's vocabulary), concatenated (`text_tokens`, the block).

        Raises:
            ConfigError: a feature that is not fitted.
        """
        cls._check_fitted(features)
        tokens = [f._vectorize_layer(f"{f.input_name}_vectorize")(
            inputs[f.input_name]) for f in features]
        if len(tokens) == 1:
            return tokens[0]
        return keras.layers.Concatenate(name=cls.block_layer(features))(tokens)

    @classmethod
    def block_layer(cls, features):
        if len(features) == 1:
            return f"{features[0].input_name}_vectorize"
        return "text_tokens"

    @classmethod
    def embed(cls, features, block, **options):
        """Each group's encoder (`text_<group>_encoder`, shared by its
        columns) on each feature's tokens."""
        outputs, start = [], 0
        encoders = {}
        for feature in features:
            stop = start + feature.sequence_length
            tokens = block
            if len(features) > 1:
                tokens = TakeColumns(list(range(start, stop)),
                                     name=f"{feature.input_name}_tokens")(block)
            start = stop
            if feature.group not in encoders:
                members = _groups(features)[feature.group]
                encoders[feature.group] = _encoder_layers(members)
            for layer in encoders[feature.group]:
                tokens = layer(tokens)
            outputs.append(tokens)
        return outputs

    # === Config ===

    def get_config(self):
        config = {**super().get_config(), **self.settings,
                  "group": self.group, "sequence_length": self.sequence_length,
                  "vocabulary": self.vocabulary, "idf": self.idf}
        return config


def _groups(features):
    """`{group: [features]}` in the order of first appearance."""
    groups = {}
    for feature in features:
        groups.setdefault(feature.group, []).append(feature)
    return groups


def _fit_group(members, frame):
    """Fits one vocabulary group: vocabulary, idf and each member's sequence
    length, from the texts of all its columns (each cell one document)."""
    first = members[0]
    for other in members[1:]:
        if other.settings != first.settings:
            differ = sorted(k for k in first.settings
                            if first.settings[k] != other.settings[k])
            raise ConfigError(
                f"Text features {first.name!r} and {other.name!r} share the "
                f"group {first.group!r} (one vocabulary and encoder) but differ "
                f"in {differ}. Give them the same settings, or separate groups.")
    columns = {}
    for feature in members:
        values = feature.convert(frame)
        if not len(values) or not any(v.strip() for v in values):
            raise DataError(
                f"Text feature '{feature.name}' has no text in the training "
                f"data (every value is missing or empty). Remove it from "
                f"features.text, or fix the column.")
        columns[feature.name] = values
    texts = np.concatenate(list(columns.values()))
    if first.preset is not None:
        _fit_preset_group(members, columns)
        return
    counter = _text_vectorization(first.settings, ragged=True)
    counter.adapt(texts, batch_size=ENCODE_BATCH)
    candidates = counter.get_vocabulary()[2:]
    frequency = np.zeros(0, "int64")
    if candidates:
        frequency = _document_frequency(counter, texts, len(candidates) + 2)[2:]
    keep = np.flatnonzero(frequency >= first.min_frequency)
    # Most documents first, ties in sorted order.
    keep = keep[np.lexsort((np.asarray(candidates, dtype=object)[keep].astype(str),
                            -frequency[keep]))]
    keep = keep[:first.max_tokens - 2]
    names = ", ".join(repr(f.name) for f in members)
    if not len(keep):
        raise DataError(
            f"Text feature(s) {names}: the vocabulary is empty: no "
            f"{'character' if first.split == 'character' else 'word'} n-gram is "
            f"found in at least min_frequency={first.min_frequency} training "
            f"texts ({len(candidates)} distinct ones in {len(texts):,} texts). "
            f"Lower min_frequency, or check the column holds text.")
    vocabulary = [str(candidates[i]) for i in keep]
    # Document frequencies and lengths under the final vocabulary (the
    # out-of-vocabulary index 1 counts as one n-gram).
    vectorizer = _text_vectorization(first.settings, vocabulary=vocabulary,
                                     ragged=True)
    final = _document_frequency(vectorizer, texts, len(vocabulary) + 2)
    rows = len(texts)
    idf = np.log((1.0 + rows) / (1.0 + final)) + 1.0
    idf[0] = 0.0
    lengths = {name: _longest(vectorizer, values)
               for name, values in columns.items()}
    for feature in members:
        feature.vocabulary = vocabulary
        feature.idf = [round(float(w), 6) for w in idf]
        feature.sequence_length = feature._declared_length or max(
            1, min(MAX_SEQUENCE_LENGTH, lengths[feature.name]))
        feature._vectorizer = None


def _fit_preset_group(members, columns):
    """A pretrained group: no vocabulary to fit (the preset's tokenizer has
    one); each member's sequence length is its longest training text in the
    preset's tokens, start and end tokens included, at most the backbone's
    longest input."""
    tokenizer = PresetTokenizer(members[0].preset, dtype="int64")
    for feature in members:
        longest = 1
        values = columns[feature.name]
        for i in range(0, len(values), ENCODE_BATCH):
            ids = np.asarray(tokenizer(values[i:i + ENCODE_BATCH]))
            longest = max(longest, int((ids != tokenizer.padding_id).sum(1).max()))
        feature.vocabulary = []
        feature.idf = None
        feature.sequence_length = feature._declared_length or longest
        feature._vectorizer = None


def _text_vectorization(settings, vocabulary=None, name=None,
                        output_sequence_length=None, ragged=False):
    """A `TextVectorization` with a group's settings, returning indices."""
    standardize = settings["standardize"]
    return keras.layers.TextVectorization(
        standardize=None if standardize == "none" else standardize,
        split=settings["split"],
        ngrams=settings["ngrams"] if settings["ngrams"] > 1 else None,
        output_mode="int", output_sequence_length=output_sequence_length,
        ragged=ragged, vocabulary=vocabulary, name=name)


def _ragged_ids(vectorizer, texts):
    for i in range(0, len(texts), ENCODE_BATCH):
        yield vectorizer(texts[i:i + ENCODE_BATCH])


def _document_frequency(vectorizer, texts, size):
    """int64 `(size,)`: how many of `texts` hold each index at least once."""
    frequency = np.zeros(size, "int64")
    for ids in _ragged_ids(vectorizer, texts):
        rows = np.repeat(np.arange(ids.nrows()), ids.row_lengths().numpy())
        # Distinct (row, index) pairs; sorting then dropping repeats is ~10x
        # faster than np.unique's hashing on millions of int64 keys.
        pairs = np.sort(rows * size + ids.flat_values.numpy())
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
        frequency += np.bincount(pairs % size, minlength=size)
    return frequency


def _longest(vectorizer, texts):
    """The largest number of indices of one text."""
    return max(int(np.max(ids.row_lengths().numpy(), initial=0))
               for ids in _ragged_ids(vectorizer, texts))


def _encoder_layers(members):
    """The layers of one group's encoder: token ids -> `(batch, d)`."""
    first = members[0]
    name = f"text_{first.group}"
    size = first.vocabulary_size
    if first.encoder == "bag":
        layers = [TokenBag(size, values="tf_idf" if first.tf_idf else "multi_hot",
                           idf=first.idf if first.tf_idf else None,
                           name=f"{name}_bag"),
                  keras.layers.Dense(first.dim, activation=first.activation,
                                     name=f"{name}_encoder")]
    elif first.encoder == "embedding":
        layers = [keras.layers.Embedding(size, first.dim, mask_zero=True,
                                         name=f"{name}_embedding"),
                  SequencePooling("mean_max", name=f"{name}_encoder")]
    elif first.encoder == "pretrained":
        tokenizer = PresetTokenizer(first.preset, dtype="int64")
        layers = [PresetTextEncoder(first.preset, pooling=first.pooling,
                                    padding_id=tokenizer.padding_id,
                                    name=f"{name}_encoder")]
    else:
        layers = [TransformerTextEncoder(
            size, max(f.sequence_length for f in members), embedding_dim=first.dim,
            num_layers=first.num_layers, num_heads=first.num_heads,
            dropout=first.dropout, name=f"{name}_encoder")]
    if first.dropout:
        layers.append(keras.layers.Dropout(first.dropout, name=f"{name}_dropout"))
    return layers

