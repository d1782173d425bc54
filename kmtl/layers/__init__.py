"""kmtl's building-block layers (architectures live in `kmtl.architectures`)."""

from kmtl.layers.impute_missing import ImputeMissing
from kmtl.layers.stacked_embedding import StackedEmbedding

__all__ = ["ImputeMissing", "StackedEmbedding"]
