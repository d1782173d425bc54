"""Shared set-up for the benchmarks: the census data, fitted once per process."""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
