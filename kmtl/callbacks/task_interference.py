"""`TaskInterference`: gradient cosines and lookahead inter-task affinity over
training."""

import warnings

import keras
import numpy as np

from kmtl._checks import check_positive_int
from kmtl.measures.interference import gradient_cosines
from kmtl.measures.interference import lookahead_affinity


class TaskInterference(keras.callbacks.Callback):
    """Tracks how the tasks interfere over training: the pairwise cosines of
    their gradients and their lookahead inter-task affinity.

    Fifty, Amid, Zhao, Yu, Anil and Finn, "Efficiently Identifying Task
    Groupings for Multi-Task Learning", NeurIPS 2021 (arXiv:2109.04617). At the
    end of every `every`-th epoch it computes, on the same probe batches,
    `kmtl.measures.gradient_cosines` and `kmtl.measures.lookahead_affinity`
    (`affinity[i, j] > 0`: an SGD step on task i's loss lowers task j's loss),
    appends them to `cosines_history` and `affinity_history`, and adds
    `affinity_<a>_<b>` (row task a stepped on, column task b measured, a != b)
    to the epoch logs, so a `keras.callbacks.TensorBoard` placed after it writes
    them. `cosines` and `affinity` are the averages over the recorded epochs.

    TAG averages the affinity over every training step, on each step's own
    batch. This callback approximates that average by sampling: a few fixed
    probe batches at the end of every `every`-th epoch. That is much cheaper
    (no work inside the train step) and less noisy from one record to the next,
    at the price of missing within-epoch dynamics.

    Args:
        data: a `tf.data.Dataset` of `(features, labels, sample_weights)`
            batches (e.g. `make_dataset(validation, ...)`); the first `batches`
            are used every time.
        every: int, default 1. Compute every `every` epochs.
        batches: int, default 1.
        learning_rate: float or None. The lookahead step size; default the
            optimizer's learning rate at the time.

    Raises:
        ValueError: `every` or `batches` is not a positive integer, or
            `learning_rate` is not positive.

    Examples:
        ```python
        interference = kmtl.callbacks.TaskInterference(probe, every=5, batches=2)
        model.fit(train, epochs=50, callbacks=[interference])
        interference.affinity          # (T, T), averaged over the recorded epochs
        ```
    """

    def __init__(self, data, every=1, batches=1, learning_rate=None):
        super().__init__()
        check_positive_int(every, "every")
        check_positive_int(batches, "batches")
        if learning_rate is not None and not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0. Received: "
                             f"learning_rate={learning_rate!r}")
        self.data = data
        self.every = every
        self.batches = batches
        self.learning_rate = learning_rate
        self.epochs = []
        self.cosines_history = []
        self.affinity_history = []

    @staticmethod
    def _average(history):
        if not history:
            return None
        with warnings.catch_warnings():
            # A pair that no probe batch labels for both tasks stays NaN.
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack(history), axis=0)

    @property
    def cosines(self):
        """`(T, T)` gradient cosines averaged over the recorded epochs (None
        before the first)."""
        return self._average(self.cosines_history)

    @property
    def affinity(self):
        """`(T, T)` lookahead affinity averaged over the recorded epochs, row =
        task stepped on, column = task measured (None before the first)."""
        return self._average(self.affinity_history)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        # Both measures reuse one traced probe per model.
        cosines = gradient_cosines(self.model, self.data, self.batches)
        affinity = lookahead_affinity(self.model, self.data, self.learning_rate,
                                      self.batches)
        self.epochs.append(epoch)
        self.cosines_history.append(cosines)
        self.affinity_history.append(affinity)
        if logs is None:
            return
        names = self.model.task_names
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    logs[f"affinity_{a}_{b}"] = float(affinity[i, j])
