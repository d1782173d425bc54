"""kmtl's building-block layers (architectures live in `kmtl.architectures`)."""

from kmtl.layers.impute_missing import ImputeMissing
from kmtl.layers.one_hot_block import OneHotBlock
from kmtl.layers.periodic import PeriodicEmbedding
from kmtl.layers.piecewise_linear import PiecewiseLinearEncoding
from kmtl.layers.piecewise_linear import quantile_bin_edges
from kmtl.layers.stacked_embedding import StackedEmbedding
from kmtl.layers.take_columns import TakeColumns

__all__ = [
    "ImputeMissing",
    "OneHotBlock",
    "PeriodicEmbedding",
    "PiecewiseLinearEncoding",
    "StackedEmbedding",
    "TakeColumns",
    "quantile_bin_edges",
]
