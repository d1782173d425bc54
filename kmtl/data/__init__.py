"""Data: reading tables, combining per-task labels, splits and tf.data pipelines
(in memory, or streamed from files larger than memory)."""

from kmtl.data.combine import combine_task_tables
from kmtl.data.io import read_table
from kmtl.data.non_finite import NON_FINITE_ACTIONS
from kmtl.data.non_finite import handle_non_finite
from kmtl.data.non_finite import non_finite_counts
from kmtl.data.pipeline import encode_labels
from kmtl.data.pipeline import make_dataset
from kmtl.data.sampling import COMPOSITIONS
from kmtl.data.sampling import SAMPLING_METHODS
from kmtl.data.sampling import SampledDataset
from kmtl.data.sampling import TaskSampling
from kmtl.data.sampling import make_sampled_dataset
from kmtl.data.sampling import task_probabilities
from kmtl.data.split import SPLIT_METHODS
from kmtl.data.split import fold_ids
from kmtl.data.split import split_frame
from kmtl.data.streaming import SplitRule
from kmtl.data.streaming import StreamedSplit
from kmtl.data.streaming import TableSource
from kmtl.data.streaming import check_splits
from kmtl.data.streaming import fit_sample
from kmtl.data.streaming import stream_dataset

__all__ = [
    "COMPOSITIONS",
    "NON_FINITE_ACTIONS",
    "handle_non_finite",
    "non_finite_counts",
    "SAMPLING_METHODS",
    "SPLIT_METHODS",
    "SampledDataset",
    "SplitRule",
    "StreamedSplit",
    "TableSource",
    "TaskSampling",
    "check_splits",
    "combine_task_tables",
    "encode_labels",
    "fit_sample",
    "make_dataset",
    "make_sampled_dataset",
    "read_table",
    "fold_ids",
    "split_frame",
    "stream_dataset",
    "task_probabilities",
]
