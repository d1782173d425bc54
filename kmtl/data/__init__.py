"""Data: reading tables, combining per-task labels, splits and tf.data pipelines."""

from kmtl.data.combine import combine_task_tables
from kmtl.data.io import read_table
from kmtl.data.pipeline import encode_labels
from kmtl.data.pipeline import make_dataset
from kmtl.data.split import SPLIT_METHODS
from kmtl.data.split import split_frame

__all__ = [
    "SPLIT_METHODS",
    "combine_task_tables",
    "encode_labels",
    "make_dataset",
    "read_table",
    "split_frame",
]
