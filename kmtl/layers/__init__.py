"""kmtl's building-block layers (architectures live in `kmtl.architectures`)."""

from kmtl.layers.impute_missing import ImputeMissing

__all__ = ["ImputeMissing"]
