"""Data: reading tables, combining per-task labels, splits and tf.data pipelines."""

from kmtl.data.combine import combine_task_tables
from kmtl.data.io import read_table
from kmtl.data.non_finite import NON_FINITE_ACTIONS
from kmtl.data.non_finite import handle_non_finite
from kmtl.data.non_finite import non_finite_counts
from kmtl.data.pipeline import encode_labels
from kmtl.data.pipeline import make_dataset
from kmtl.data.split import SPLIT_METHODS
from kmtl.data.split import split_frame

__all__ = [
    "NON_FINITE_ACTIONS",
    "handle_non_finite",
    "non_finite_counts",
    "SPLIT_METHODS",
    "combine_task_tables",
    "encode_labels",
    "make_dataset",
    "read_table",
    "split_frame",
]
