"""Shared set-up for the benchmarks: the census and reviews data, and timers."""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from kmtl.runs.config import read_config  # noqa: E402
from kmtl.runs.data import build_tasks  # noqa: E402
from kmtl.runs.data import load_splits  # noqa: E402
from kmtl.runs.data import prepare  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CENSUS_CONFIG = os.path.join(ROOT, "examples", "census_income.yaml")


def census_dir():
    """The census folder: $KMTL_DATA_DIR, else ../shared/data/census-income."""
    return os.environ.get("KMTL_DATA_DIR") or os.path.join(
        ROOT, "..", "shared", "data", "census-income")


def reviews_dir():
    """The reviews folder: $KMTL_DATA_DIR, else ../shared/data/womens-clothing-reviews
    (`kmtl.datasets.womens_clothing_reviews.reviews_file` also looks in a
    `womens-clothing-reviews/` subfolder of $KMTL_DATA_DIR)."""
    return os.environ.get("KMTL_DATA_DIR") or os.path.join(
        ROOT, "..", "shared", "data", "womens-clothing-reviews")


def census():
    """`(config, train, validation, features, tasks)` for the census example."""
    config = read_config(CENSUS_CONFIG)
    tasks = build_tasks(config)
    train, validation, _ = load_splits(config, census_dir(), tasks)
    features = prepare(config, train, tasks)
    return config, train, validation, features, tasks


class EpochTimer:
    """A Keras callback recording wall-clock seconds per epoch: the training
    part only, until fit's validation pass starts (`on_test_begin`), as
    DeepCTR's timer in `deepctr_mmoe.py` does."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()
                self._train_end = None

            def on_test_begin(self, logs=None):
                if self._train_end is None:
                    self._train_end = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                end = self._train_end or time.perf_counter()
                self.seconds.append(end - self._start)

        return _Timer()


def peak_rss_mb():
    """This process's peak resident memory in MB (`VmHWM`: reset by `exec`,
    unlike `ru_maxrss`, which a child started from a large parent inherits)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median(values):
    return statistics.median(values)


@tf.function
def _consume(dataset):
    """Iterates a dataset of `(features, labels, sample_weights)` inside a
    graph, as `fit` does; returns the row count."""
    rows = tf.constant(0, tf.int64)
    for _, _, weights in dataset:
        rows += tf.shape(next(iter(weights.values())), out_type=tf.int64)[0]
    return rows


def rows_per_second(dataset, epochs):
    """`(rows per second, rows)` of one pass over `dataset` in a `tf.function`,
    the median over `epochs` passes after a warm-up pass (which traces the
    tf.data functions)."""
    _consume(dataset)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        rows = int(_consume(dataset))
        seconds.append(time.perf_counter() - start)
    return rows / median(seconds), rows


def numeric_table(num_tasks, inputs=64, rows=20 * 1024, seed=0):
    """`(features, tasks, data)`: a synthetic table of `inputs` normal columns
    and `num_tasks` linear regression targets, as cached encoded batches of
    1024 (read once, so timing starts warm)."""
    import numpy as np
    import pandas as pd

    from kmtl import Task
    from kmtl.data import make_dataset
    from kmtl.features import Feature

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, inputs)).astype("float32")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(inputs)])
    for t in range(num_tasks):
        frame[f"y{t}"] = x @ rng.normal(size=inputs) + rng.normal(size=rows)
    tasks = [Task(f"y{t}", "regression").fit(frame) for t in range(num_tasks)]
    features = [Feature(f"x{i}", "numeric").fit(frame) for i in range(inputs)]
    data = make_dataset(frame, features, tasks, 1024).cache()
    for _ in data:
        pass
    return features, tasks, data


def epoch_seconds(model, data):
    """Wall-clock seconds of one training epoch of `model` on `data`."""
    timer = EpochTimer()
    model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return timer.seconds[0]
