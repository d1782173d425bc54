"""Input features: their kinds, the statistics fitted on the training split, the
conversion of a DataFrame to the raw arrays the model takes, and the
preprocessing in the model.

Each kind is a subclass of `Feature` registered in `FEATURE_KINDS`, one file each:

- `numeric` (`NumericFeature`): float32. Missing values (NaN) are allowed; the
  model imputes the training mean and adds a 0/1 missing indicator (see
  `kmtl.layers.ImputeMissing`).
- `categorical` (`CategoricalFeature`): strings (`dtype="string"`, looked up with
  `StringLookup`) or integer codes (`dtype="int64"`, `IntegerLookup`). Missing
  strings become the empty string `""`, a category like any other; values not
  seen in training map to the out-of-vocabulary index.
- `text` (`TextFeature`): free text, vectorized with the training vocabulary
  (`keras.layers.TextVectorization`) and read by a bag-of-n-grams, pooled
  embedding or Transformer encoder; a missing text is the empty string.

`Feature(name, kind, dtype)` returns an instance of the kind's class. A new kind
is one file: a subclass that fills in the contract below, registered with
`@kmtl.features.register("name")`.

A feature keeps its column name (`name`: what DataFrames, `make_dataset`,
`kmtl predict` and `kmtl evaluate` use) and the name of its model input
(`input_name`, see `input_name`): the same for a column such as `bill_length_mm`,
sanitized for one such as `bill length (mm)`, which Keras refuses as a layer
name and TensorFlow as a SavedModel signature key.
"""

import warnings

import numpy as np
import pandas as pd

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.naming import ascii_name
from kmtl.registry import Registry

MISSING_STRING = ""
"""The category a missing string value becomes."""
MISSING_INT = -1
"""The code a missing integer categorical value becomes."""
ENCODED_PREFIX = "encoded:"
"""The key of a kind's encoded block in an encoded batch is this prefix and the
kind's name (`encoded:numeric`); the `:` keeps it apart from any model input
name."""

INPUT_NAME_PREFIX = "col_"
"""What `input_name` puts before a sanitized name that does not start with a
letter (`2nd home` -> `col_2nd_home`)."""


def input_name(column):
    """The model input name of a column: the column name itself when it is a
    valid one, else a sanitized name.

    A valid input name is an ASCII letter followed by ASCII letters, digits and
    underscores (`[A-Za-z][A-Za-z0-9_]*`): Keras takes it as a layer name and
    TensorFlow as a SavedModel signature key unchanged. Any other name is
    sanitized: letters with accents lose them (`île` -> `ile`), a few letters
    are transliterated (`ß` -> `ss`, `æ` -> `ae`, `ø` -> `o`), a letter of
    another script becomes its code point (`収` -> `u53ce`), every run of other
    characters becomes one `_`, leading and trailing `_` are dropped, and a
    name that does not start with a letter gets the prefix `col_`. The rule
    is fixed: a feature stores the name it got (`Feature.get_config`), so a
    saved model keeps its inputs.

    Args:
        column: the column name (str, or anything `str` takes: an int header).

    Returns:
        str: the input name.

    Examples:
        >>> [input_name(c) for c in ["island", "bill length (mm)", "capital-gain",
        ...                          "île", "Größe", "2nd home"]]
        ['island', 'bill_length_mm', 'capital_gain', 'ile', 'Grosse', 'col_2nd_home']
    """
    name = ascii_name(column)
    if not name[:1].isalpha():
        name = INPUT_NAME_PREFIX + name if name else INPUT_NAME_PREFIX.rstrip("_")
    return name


def check_input_names(features):
    """Checks that no two features get the same model input name.

    Args:
        features: list of `Feature`.

    Raises:
        ConfigError: two columns share an input name (`a b` and `a_b` are both
            `a_b`), naming both columns and the fix.
    """
    seen = {}
    for feature in features:
        other = seen.setdefault(feature.input_name, feature)
        if other is not feature:
            raise ConfigError(
                f"Feature columns {other.name!r} and {feature.name!r} both become "
                f"the model input {feature.input_name!r} (input names keep ASCII "
                f"letters, digits and '_'). Rename one of the columns, or leave "
                f"one out of `features`.")


class Feature:
    """One raw input column of the model (the base of every feature kind).

    Args:
        name: str. The column name: the key in DataFrames and the name in the
            config. The model input is named `input_name(name)`, kept as the
            attribute `input_name` (the same name unless the column name is not
            a valid input name, e.g. `bill length (mm)` -> `bill_length_mm`).
        kind: str. A registered kind (`kmtl.features.list_feature_kinds()`):
            `"numeric"`, `"categorical"` or `"text"`.
            `Feature(name, kind, ...)` returns an instance of that kind's class.
        dtype: str. The raw dtype the model takes, one of the kind's `dtypes`:
            `"float32"` for numeric, `"string"` or `"int64"` for categorical,
            `"string"` for text.
            Default: the kind's first.

    A kind's class also takes the kind's fitted statistics as keyword arguments
    (numeric: `mean`, `variance`, `missing`; categorical: `vocabulary`;
    text: `vocabulary`, `idf`, `sequence_length`), and its settings, as `fit`
    sets them and `get_config` lists them.

    Raises:
        ConfigError: unknown kind, or a dtype the kind does not take.

    Examples:
        >>> feature = Feature("island", "categorical").fit(frame)
        >>> type(feature).__name__, feature.vocabulary
        ('CategoricalFeature', ['Biscoe', 'Dream', 'Torgersen'])
    """

    # === The contract: what a feature kind sets or overrides ===

    #: The raw dtypes the kind takes; the first is the default.
    dtypes = ()
    #: Where the kind's block goes in the encoded features: kinds are encoded
    #: in increasing `position` (numeric 0, categorical 1), whatever the order
    #: of the features, so a model's layout does not depend on column order.
    position = 0

    def convert(self, frame):
        """The column of `frame` as the model's raw array `(rows,)` of `dtype`.

        Raises:
            DataError: the column is missing or holds values the kind refuses.
        """
        raise NotImplementedError

    def fit(self, frame, max_vocabulary=None, min_frequency=1):
        """Fits the kind's statistics on the training split; returns `self`.

        Args:
            frame: the training DataFrame.
            max_vocabulary: int or None. Kinds with a vocabulary keep at most
                this many entries, the most frequent.
            min_frequency: int. Kinds with a vocabulary drop entries seen fewer
                times.
        """
        raise NotImplementedError

    @classmethod
    def fit_kind(cls, features, frame, max_vocabulary=None, min_frequency=1):
        """Fits every feature of this kind on the training split (by default
        each one's `fit`; a kind whose features depend on each other, such as
        text columns sharing a vocabulary, fits them together).

        Args:
            features: list of features of this kind.
            frame: the training DataFrame.
            max_vocabulary: int or None, as for `fit`.
            min_frequency: int, as for `fit`.
        """
        for feature in features:
            feature.fit(frame, max_vocabulary=max_vocabulary,
                        min_frequency=min_frequency)

    @property
    def fitted(self):
        """Whether `fit` has set the kind's statistics."""
        raise NotImplementedError

    def unseen_share(self, frame):
        """The share of `frame`'s non-missing values that the fitted feature
        never saw in training (they all map to one out-of-vocabulary index), or
        None for a kind without a vocabulary (the default).

        Returns:
            float in [0, 1], or None (also for a frame without values).
        """
        return None

    # Preprocessing comes in two halves with one boundary, the kind's *encoded
    # block* (`ENCODED_PREFIX + kind`, e.g. `encoded:categorical`): fitted,
    # stateless preprocessing (lookups, normalization) turns raw values into
    # the block, and the model's own layers (embeddings, imputation) read it.
    # `encode` computes the block from a DataFrame once, vectorized, for the
    # training pipeline; `preprocess` builds the same computation as layers in
    # front of the model, for raw inputs at serving time. The two must agree
    # exactly (tests/features/feature_kind_case.py checks it for every kind).

    @classmethod
    def encode(cls, features, frame):
        """The encoded block of `features` for the rows of `frame`, computed
        in NumPy, vectorized.

        Args:
            features: list of fitted features of this kind, in model order
                (non-empty).
            frame: a DataFrame holding their columns.

        Returns:
            A NumPy array `(rows, block width)` of the block's dtype
            (`preprocess`'s output, value for value).

        Raises:
            DataError: a column is missing or holds values the kind refuses.
        """
        raise NotImplementedError

    @classmethod
    def preprocess(cls, features, inputs):
        """The fitted preprocessing of every feature of this kind as layers:
        raw inputs -> the encoded block.

        Args:
            features: list of fitted features of this kind, in model order
                (non-empty).
            inputs: dict `{feature.input_name: keras.Input (batch, 1)}`.

        Returns:
            The block, a `(batch, block width)` tensor, produced by the layer
            named `block_layer(features)`.

        Raises:
            ConfigError: a feature that is not fitted.
        """
        raise NotImplementedError

    @classmethod
    def block_layer(cls, features):
        """The name of the layer whose output is the encoded block (so a model
        revived from a file finds its block)."""
        raise NotImplementedError

    @classmethod
    def encoded_key(cls):
        """The key of the kind's block in an encoded batch: `ENCODED_PREFIX`
        and the kind's name (`encoded:numeric`)."""
        return ENCODED_PREFIX + cls.registered_name

    @classmethod
    def embed(cls, features, block, **options):
        """The model's own layers on the encoded block.

        Args:
            features: list of fitted features of this kind, in model order
                (may be empty: a kind still checks its options then).
            block: the encoded block tensor, or None without features.
            **options: `build_model`'s preprocessing options
                (`categorical_encoding`, `embedding_dim`, `numeric_encoding`,
                ...); a kind reads its own.

        Returns:
            A list of float `(batch, d)` tensors (empty without features).

        Raises:
            ConfigError: a bad option value.
        """
        raise NotImplementedError

    # === Construction ===

    def __new__(cls, name=None, kind=None, *args, **kwargs):
        if cls is Feature:
            if kind not in FEATURE_KINDS.list():
                raise ConfigError(
                    f"Feature '{name}': unknown kind {kind!r}. Use one of "
                    f"{tuple(list_feature_kinds())}."
                )
            cls = FEATURE_KINDS.get_class(kind)
        return super().__new__(cls)

    def __init__(self, name, kind=None, dtype=None):
        own = self.kind
        if kind is not None and kind != own:
            raise ConfigError(
                f"Feature '{name}': a {self.__class__.__name__} has kind {own!r}. "
                f"Received: kind={kind!r}"
            )
        if dtype is None:
            dtype = self.dtypes[0]
        if dtype not in self.dtypes:
            raise ConfigError(
                f"Feature '{name}': dtype {dtype!r} does not fit kind {own!r}; use "
                f"one of {self.dtypes}."
            )
        self.name = name
        self.dtype = dtype
        self.input_name = input_name(name)

    @property
    def kind(self):
        """The registered name of the feature's kind (`"numeric"`, ...)."""
        return self.registered_name

    # === Raw values ===

    def _check_column(self, frame):
        if self.name in frame.columns:
            return
        if self.input_name in frame.columns:
            raise DataError(
                f"Feature '{self.name}' not found in the data, which has its "
                f"model input name '{self.input_name}' instead. Tables keep "
                f"the column names the model was trained on: rename the column "
                f"to '{self.name}'."
            )
        raise DataError(
            f"Feature '{self.name}' not found in the data. Available columns: "
            f"{list(frame.columns)}. Fix the feature list or the data."
        )

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

    # === Config ===

    def get_config(self):
        """`{"name", "kind", "dtype"}`, `"input_name"` when it differs from the
        name, and the kind's statistics."""
        config = {"name": self.name, "kind": self.kind, "dtype": self.dtype}
        if self.input_name != self.name:
            config["input_name"] = self.input_name
        return config

    @classmethod
    def from_config(cls, config):
        """The feature `get_config` described, with its stored input name."""
        config = dict(config)
        stored = config.pop("input_name", None)
        feature = cls(**config)
        if stored is not None:
            feature.input_name = stored
        return feature

    def __repr__(self):
        return f"Feature(name={self.name!r}, kind={self.kind!r}, dtype={self.dtype!r})"


def _category_text(value):
    """A category as text; integral floats (codes read as floats) lose the `.0`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# === The registry ===

FEATURE_KINDS = Registry("feature kind", Feature, keras_serializable=False)
"""The registry of feature kinds (`kmtl.registry.Registry`): `"numeric"`,
`"categorical"`."""


def register(*names):
    """Class decorator registering a `Feature` subclass as a feature kind.

    Args:
        *names: str. The kind's names, lower case (the first is canonical).

    Returns:
        The decorator.

    Raises:
        TypeError: the class does not subclass `Feature`.
        ValueError: no name, or a name taken by another class.

    Examples:
        >>> @kmtl.features.register("text")
        ... class TextFeature(Feature): ...
    """
    return FEATURE_KINDS.register(*names)


def list_feature_kinds():
    """The registered feature kinds, sorted.

    Returns:
        list of str: `["categorical", "numeric"]` and any registered since.
    """
    return FEATURE_KINDS.names()


def serialize(feature):
    """A feature as a config dict.

    Args:
        feature: a `Feature`.

    Returns:
        dict: `{"class_name": <kind>, "config": feature.get_config()}`.
    """
    return FEATURE_KINDS.serialize(feature)


def deserialize(config):
    """The feature `serialize` described.

    Args:
        config: dict, `serialize`'s output.

    Returns:
        A `Feature`.

    Raises:
        ConfigError: `config` does not describe a feature.
    """
    return FEATURE_KINDS.deserialize(config)


def get(identifier):
    """Returns a `Feature` from a Feature, its `get_config()` dict or
    `serialize`'s output.

    Args:
        identifier: a `Feature` (returned as is), a `get_config()` dict or
            `serialize`'s output.

    Returns:
        A `Feature`, an instance of its kind's class.

    Raises:
        ConfigError: a dict without `name` and `kind`, or anything else.
    """
    if isinstance(identifier, Feature):
        return identifier
    if isinstance(identifier, dict):
        if "class_name" in identifier and "name" not in identifier:
            return deserialize(identifier)
        for key in ("name", "kind"):
            if key not in identifier:
                raise ConfigError(
                    f"A feature is missing the key '{key}': {identifier}. Every "
                    f"feature needs `name` and `kind` "
                    f"({', '.join(list_feature_kinds())})."
                )
        try:
            return Feature.from_config(identifier)
        except TypeError as error:
            raise ConfigError(f"Feature {identifier['name']!r}: {error}") from None
    raise ConfigError(f"Cannot interpret a feature from {identifier!r}.")


# === Encoding a frame ===


def by_kind(features):
    """`[(kind class, its features)]` for every registered kind, in the order
    of `position` (numeric, then categorical); a kind without features gets
    an empty list."""
    groups = {}
    for feature in features:
        groups.setdefault(feature.kind, []).append(feature)
    kinds = sorted((FEATURE_KINDS.get_class(name) for name in list_feature_kinds()),
                   key=lambda cls: cls.position)
    return [(kind, groups.get(kind.registered_name, [])) for kind in kinds]


def fit_features(features, frame, max_vocabulary=None, min_frequency=1):
    """Fits every feature on the training split, kind by kind
    (`Feature.fit_kind`): text columns that share a vocabulary group are
    fitted together.

    Args:
        features: list of `Feature`.
        frame: the training DataFrame.
        max_vocabulary: int or None. Categorical features keep at most this
            many categories.
        min_frequency: int. Categorical features drop categories seen fewer
            times (text features have their own `min_frequency`).

    Returns:
        `features`, fitted.

    Raises:
        DataError: a column is missing or holds values its kind refuses.
    """
    for kind, members in by_kind(features):
        if members:
            kind.fit_kind(members, frame, max_vocabulary=max_vocabulary,
                          min_frequency=min_frequency)
    return features


def encode_frame(features, frame):
    """The encoded blocks of `frame`'s rows, computed once in NumPy
    (`Feature.encode`): what the fitted preprocessing in front of the model
    gives for the same raw values.

    Args:
        features: list of fitted `Feature`.
        frame: a DataFrame with their columns under the column names.

    Returns:
        dict `{Feature.encoded_key(): array (rows, block width)}`, e.g.
        `{"encoded:numeric": float32 (rows, 4), "encoded:categorical": int64
        (rows, 2)}`.

    Raises:
        DataError: a column is missing or holds values its kind refuses.
        ConfigError: a feature that is not fitted.
    """
    return {kind.encoded_key(): kind.encode(members, frame)
            for kind, members in by_kind(features) if members}


# === Declaring features from a table ===


def infer_kind(column):
    """The kind and dtype of a feature read from a raw column.

    Args:
        column: pandas Series.

    Returns:
        `("categorical", "int64")` for a boolean column, `("numeric",
        "float32")` for other numbers, else `("categorical", "string")`.
    """
    if pd.api.types.is_bool_dtype(column):
        return "categorical", "int64"
    if pd.api.types.is_numeric_dtype(column):
        return "numeric", "float32"
    return "categorical", "string"


# A text column chosen automatically is left out when it has at least this many
# distinct values and they are more than this share of its non-missing values:
# free text or an ID, whose held-out values would all be out-of-vocabulary.
UNIQUE_MIN_VALUES = 20
UNIQUE_SHARE = 0.5


def _looks_unique(column):
    """True, with a warning naming the column, when a text column looks like
    free text or an ID (`UNIQUE_MIN_VALUES`, `UNIQUE_SHARE`)."""
    values = column.dropna()
    distinct = values.nunique()
    if distinct < UNIQUE_MIN_VALUES or distinct <= UNIQUE_SHARE * len(values):
        return False
    warnings.warn(
        f"Column {column.name!r} is not used as a feature: {distinct:,} of its "
        f"{len(values):,} values are distinct ({distinct / len(values):.0%}), as "
        f"in free text or an ID, so most held-out values would be unseen "
        f"categories. Declare free text under features.text, an ID under "
        f"features.exclude (or features.categorical to use it anyway).",
        UserWarning, stacklevel=3)
    return True


def text_features(text):
    """The text features a `features.text` declaration describes.

    Args:
        text: list whose items are a column name (a text feature with the
            default settings, its own vocabulary) or a mapping with `columns`
            (a list: one vocabulary group, fitted on all of them, one encoder
            read by each) or `column`, an optional `group` name, and any
            `kmtl.features.TextFeature` setting (`encoder`, `ngrams`, ...).

    Returns:
        list of unfitted text `Feature`s, in declaration order.

    Raises:
        ConfigError: an item that is neither, a mapping without columns, or a
            bad setting (naming the column and key).

    Examples:
        >>> [(f.name, f.group) for f in text_features(
        ...     [{"columns": ["Title", "Review Text"], "ngrams": 2}, "notes"])]
        [('Title', 'Title'), ('Review Text', 'Title'), ('notes', 'notes')]
    """
    features = []
    for position, item in enumerate(text or []):
        if isinstance(item, str):
            features.append(Feature(item, "text"))
            continue
        if not isinstance(item, dict):
            raise ConfigError(
                f"features.text[{position}] must be a column name or a mapping "
                f"such as {{columns: [Title, Review Text], encoder: bag}}. "
                f"Received: {item!r}")
        settings = dict(item)
        columns = settings.pop("columns", None)
        column = settings.pop("column", None)
        if column is not None:
            columns = [column] + list(columns or [])
        if not columns or not all(isinstance(c, str) for c in columns):
            raise ConfigError(
                f"features.text[{position}] needs `columns` (a list of column "
                f"names) or `column`. Received: {item!r}")
        group = settings.pop("group", None) or input_name(columns[0])
        features.extend(Feature(name, "text", group=group, **settings)
                        for name in columns)
    return features


def resolve_features(frame, numeric=None, categorical=None, exclude=(), text=None):
    """Builds the feature list from declarations and the training frame.

    Args:
        frame: the training DataFrame.
        numeric: list of str, or None. Columns declared numeric.
        categorical: list of str, or None. Columns declared categorical; integer
            columns keep integer codes (`IntegerLookup`), others become strings.
        exclude: columns never used as features (targets, ids). When neither
            `numeric` nor `categorical` is given, every other column that is
            not a text feature is a feature of the inferred kind, except a
            text column that looks like free text or an ID (at least
            `UNIQUE_MIN_VALUES` distinct values, more than `UNIQUE_SHARE` of
            its values), which is left out with a warning.
        text: list or None. Text features (`text_features`): column names or
            mappings of vocabulary groups with their settings.

    Returns:
        A list of unfitted `Feature`s: the declared or inferred numeric and
        categorical ones (in the frame's column order for inferred ones and in
        declaration order otherwise), then the text ones.

    Raises:
        DataError: a declared column is absent from the frame.
        ConfigError: a declared feature is also excluded (a task target), a
            column declared twice, or two columns get the same model input
            name (`check_input_names`).
    """
    texts = text_features(text)
    text_names = [f.name for f in texts]
    declared = list(numeric or []) + list(categorical or [])
    missing = [c for c in declared + text_names if c not in frame.columns]
    if missing:
        raise DataError(
            f"Feature column(s) {missing} not found in the data. Available columns: "
            f"{list(frame.columns)}. Fix `features` in the config."
        )
    overlap = set(declared + text_names) & set(exclude)
    if overlap:
        raise ConfigError(
            f"Column(s) {sorted(overlap)} are declared as features and also used as "
            f"task targets. A target cannot be an input; remove it from `features`."
        )
    twice = sorted({c for c in declared + text_names
                    if (declared + text_names).count(c) > 1})
    if twice:
        raise ConfigError(
            f"Column(s) {twice} are declared more than once in `features`; "
            f"give each column one kind.")
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
        features.extend(texts)
        check_input_names(features)
        return features
    for name in frame.columns:
        if name in exclude or name in text_names:
            continue
        kind, dtype = infer_kind(frame[name])
        if kind == "categorical" and dtype == "string" and _looks_unique(
                frame[name]):
            continue
        features.append(Feature(name, kind, dtype))
    features.extend(texts)
    if not features:
        raise DataError("No feature columns are left after removing the targets.")
    check_input_names(features)
    return features
