"""Input features: their kinds, fitted statistics, raw arrays and in-model
preprocessing.

Feature kinds are registered classes, one file each: `NumericFeature`
("numeric"), `CategoricalFeature` ("categorical") and `TextFeature`
("text"); `Feature(name, kind, dtype)` returns an instance of the kind's
class, `register` adds a kind.
`input_name(column)` is the model input name of a column (`bill length (mm)`
-> `bill_length_mm`).
"""

from kmtl.features.base import ENCODED_PREFIX
from kmtl.features.base import FEATURE_KINDS
from kmtl.features.base import INPUT_NAME_PREFIX
from kmtl.features.base import MISSING_INT
from kmtl.features.base import MISSING_STRING
from kmtl.features.base import Feature
from kmtl.features.base import check_input_names
from kmtl.features.base import deserialize
from kmtl.features.base import encode_frame
from kmtl.features.base import fit_features
from kmtl.features.base import get
from kmtl.features.base import infer_kind
from kmtl.features.base import input_name
from kmtl.features.base import list_feature_kinds
from kmtl.features.base import register
from kmtl.features.base import resolve_features
from kmtl.features.base import serialize
from kmtl.features.base import text_features
from kmtl.features.categorical import CATEGORICAL_ENCODINGS
from kmtl.features.categorical import CategoricalFeature
from kmtl.features.numeric import NUMERIC_BINS
from kmtl.features.numeric import NUMERIC_ENCODINGS
from kmtl.features.numeric import NumericFeature
from kmtl.features.text import TEXT_ENCODERS
from kmtl.features.text import TEXT_SPLITS
from kmtl.features.text import TEXT_STANDARDIZE
from kmtl.features.text import TextFeature

__all__ = [
    "CATEGORICAL_ENCODINGS",
    "NUMERIC_BINS",
    "NUMERIC_ENCODINGS",
    "TEXT_ENCODERS",
    "TEXT_SPLITS",
    "TEXT_STANDARDIZE",
    "TextFeature",
    "fit_features",
    "text_features",
    "FEATURE_KINDS",
    "INPUT_NAME_PREFIX",
    "ENCODED_PREFIX",
    "MISSING_INT",
    "MISSING_STRING",
    "CategoricalFeature",
    "Feature",
    "check_input_names",
    "NumericFeature",
    "deserialize",
    "encode_frame",
    "get",
    "infer_kind",
    "input_name",
    "list_feature_kinds",
    "register",
    "resolve_features",
    "serialize",
]
