"""Data: reading tables, combining per-task labels, splits and tf.data pipelines
(in memory, or streamed from files larger than memory)."""

from kmtl.data.combine import combine_task_tables
from kmtl.data.io import read_table
from kmtl.data.non_finite import NON_FINITE_ACTIONS
from kmtl.data.non_finite import handle_non_finite
from kmtl.data.non_finite import non_finite_counts
from kmtl.data.pipeline import encode_labels
from kmtl.data.pipeline import make_dataset
from kmtl.data.split import SPLIT_METHODS
from kmtl.data.split import split_frame
from kmtl.data.streaming import SplitRule
from kmtl.data.streaming import StreamedSplit
from kmtl.data.streaming import TableSource
from kmtl.data.streaming import check_splits
from kmtl.data.streaming import fit_sample
from kmtl.data.streaming import stream_dataset

__all__ = [
    "NON_FINITE_ACTIONS",
    "handle_non_finite",
    "non_finite_counts",
    "SPLIT_METHODS",
    "SplitRule",
    "StreamedSplit",
    "TableSource",
    "check_splits",
    "combine_task_tables",
    "encode_labels",
    "fit_sample",
    "make_dataset",
    "read_table",
    "split_frame",
    "stream_dataset",
]
