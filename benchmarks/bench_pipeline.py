"""(a) Input pipeline throughput over the census training set.

kmtl's `make_dataset`, as training uses it (the encoded blocks: the frame
encoded once, then one gather per block per batch), against two references
measured in the same run: the raw-value pipeline of kmtl 0.2
(`encoded=False`: strings gathered per batch, the model does the lookups) and
the per-row loader of the usual tutorial (a `Dataset.__getitem__` that reads one
row with `DataFrame.iloc` and a collate step that stacks rows into a batch). All
produce `(features, labels, sample_weights)` batches of 1024. The one-off
encoding of the frame (`kmtl.features.encode_frame`) is timed apart.
"""

import time

import numpy as np

from benchmarks.common import census
from benchmarks.common import rows_per_second
from kmtl.data import make_dataset
from kmtl.features import encode_frame

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


def run(per_row_rows=20_000, epochs=3):
    _, train, _, features, tasks = census()
    start = time.perf_counter()
    encode_frame(features, train)
    encode_seconds = time.perf_counter() - start
    kmtl_rate, rows = rows_per_second(
        make_dataset(train, features, tasks, BATCH, shuffle=True, seed=0), epochs)
    raw_rate, _ = rows_per_second(make_dataset(
        train, features, tasks, BATCH, shuffle=True, seed=0, encoded=False),
        epochs)

    loader = PerRowDataset(train, features, tasks)
    order = np.random.RandomState(0).permutation(len(train))[:per_row_rows]
    start = time.perf_counter()
    done = sum(len(next(iter(b[0].values()))) for b in loader.batches(order))
    per_row_rate = done / (time.perf_counter() - start)
    return {
        "kmtl_rows_per_s": kmtl_rate,
        "raw_values_rows_per_s": raw_rate,
        "per_row_loader_rows_per_s": per_row_rate,
        "encoded_over_raw": kmtl_rate / raw_rate,
        "speedup": kmtl_rate / per_row_rate,
        "encode_frame_s": encode_seconds,
        "rows": rows,
        "per_row_rows_timed": done,
        "targets": {"kmtl_rows_per_s": ">= 2e6", "speedup": ">= 50"},
    }
