"""kmtl's building-block layers (architectures live in `kmtl.architectures`)."""

from kmtl.layers.impute_missing import ImputeMissing
from kmtl.layers.one_hot_block import OneHotBlock
from kmtl.layers.periodic import PeriodicEmbedding
from kmtl.layers.piecewise_linear import PiecewiseLinearEncoding
from kmtl.layers.piecewise_linear import quantile_bin_edges
from kmtl.layers.pretrained_text import PRESET_POOLINGS
from kmtl.layers.pretrained_text import PresetTextEncoder
from kmtl.layers.pretrained_text import PresetTokenizer
from kmtl.layers.sequence_pooling import POOLINGS
from kmtl.layers.sequence_pooling import SequencePooling
from kmtl.layers.stacked_embedding import StackedEmbedding
from kmtl.layers.take_columns import TakeColumns
from kmtl.layers.token_bag import BAG_VALUES
from kmtl.layers.token_bag import TokenBag
from kmtl.layers.transformer_text_encoder import TransformerTextEncoder

__all__ = [
    "BAG_VALUES",
    "POOLINGS",
    "PRESET_POOLINGS",
    "PresetTextEncoder",
    "PresetTokenizer",
    "SequencePooling",
    "TokenBag",
    "TransformerTextEncoder",
    "ImputeMissing",
    "OneHotBlock",
    "PeriodicEmbedding",
    "PiecewiseLinearEncoding",
    "StackedEmbedding",
    "TakeColumns",
    "quantile_bin_edges",
]
