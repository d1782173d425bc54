"""Input features: their kinds, fitted statistics, raw arrays and in-model
preprocessing.

Feature kinds are registered classes, one file each: `NumericFeature`
("numeric") and `CategoricalFeature` ("categorical"); `Feature(name, kind,
dtype)` returns an instance of the kind's class, `register` adds a kind.
"""

from kmtl.features.base import FEATURE_KINDS
from kmtl.features.base import MISSING_INT
from kmtl.features.base import MISSING_STRING
from kmtl.features.base import RESERVED_KINDS
from kmtl.features.base import Feature
from kmtl.features.base import deserialize
from kmtl.features.base import get
from kmtl.features.base import infer_kind
from kmtl.features.base import list_feature_kinds
from kmtl.features.base import register
from kmtl.features.base import resolve_features
from kmtl.features.base import serialize
from kmtl.features.categorical import CATEGORICAL_ENCODINGS
from kmtl.features.categorical import CategoricalFeature
from kmtl.features.numeric import NumericFeature

__all__ = [
    "CATEGORICAL_ENCODINGS",
    "FEATURE_KINDS",
    "MISSING_INT",
    "MISSING_STRING",
    "RESERVED_KINDS",
    "CategoricalFeature",
    "Feature",
    "NumericFeature",
    "deserialize",
    "get",
    "infer_kind",
    "list_feature_kinds",
    "register",
    "resolve_features",
    "serialize",
]
