"""Input features: their kinds, fitted statistics and raw arrays."""

from kmtl.features.base import FEATURE_KINDS
from kmtl.features.base import MISSING_INT
from kmtl.features.base import MISSING_STRING
from kmtl.features.base import Feature
from kmtl.features.base import infer_kind
from kmtl.features.base import resolve_features

__all__ = ["FEATURE_KINDS", "MISSING_INT", "MISSING_STRING", "Feature",
           "infer_kind", "resolve_features"]
