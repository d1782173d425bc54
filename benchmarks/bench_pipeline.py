"""(a) Input pipeline throughput over the census training set.

kmtl's `make_dataset` (column-stacked tensors, one gather per dtype per batch)
against the per-row loader of the usual tutorial: a `Dataset.__getitem__` that
reads one row with `DataFrame.iloc` and a collate step that stacks rows into a
batch. Both produce the same `(features, labels, sample_weights)` batches of 1024.
"""

import time

import numpy as np
import tensorflow as tf

from benchmarks.common import census
from benchmarks.common import median
from kmtl.data import make_dataset

BATCH = 1024


class PerRowDataset:
    """The tutorial style: one `iloc` row per item, collated into batches."""

    def __init__(self, frame, features, tasks):
        self.frame = frame
        self.features = [f.name for f in features]
        self.tasks = tasks
        self.labels = {t.name: t.encode(frame) for t in tasks}

    def __len__(self):
        return len(self.frame)

    def __getitem__(self, i):
        row = self.frame.iloc[i]
        x = {name: row[name] for name in self.features}
        y = {name: value[0][i] for name, value in self.labels.items()}
        w = {name: value[1][i] for name, value in self.labels.items()}
        return x, y, w

    def batches(self, order):
        for start in range(0, len(order), BATCH):
            items = [self[i] for i in order[start:start + BATCH]]
            yield tuple({k: np.stack([item[j][k] for item in items])
                         for k in items[0][j]} for j in range(3))


@tf.function
def _consume(dataset):
    """Iterates a dataset inside a graph, as `fit` does; returns the row count."""
    rows = tf.constant(0, tf.int64)
    for _, _, weights in dataset:
        rows += tf.shape(next(iter(weights.values())), out_type=tf.int64)[0]
    return rows


def run(per_row_rows=20_000, epochs=3):
    _, train, _, features, tasks = census()
    dataset = make_dataset(train, features, tasks, BATCH, shuffle=True, seed=0)
    _consume(dataset)  # warm-up epoch: traces the tf.data functions
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        rows = int(_consume(dataset))
        seconds.append(time.perf_counter() - start)
    kmtl_rate = rows / median(seconds)

    loader = PerRowDataset(train, features, tasks)
    order = np.random.RandomState(0).permutation(len(train))[:per_row_rows]
    start = time.perf_counter()
    done = sum(len(next(iter(b[0].values()))) for b in loader.batches(order))
    per_row_rate = done / (time.perf_counter() - start)
    return {
        "kmtl_rows_per_s": kmtl_rate,
        "per_row_loader_rows_per_s": per_row_rate,
        "speedup": kmtl_rate / per_row_rate,
        "rows": rows,
        "per_row_rows_timed": done,
        "targets": {"kmtl_rows_per_s": ">= 1e6", "speedup": ">= 50"},
    }
