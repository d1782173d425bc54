"""`TaskFrequencies`: logs the share of each task among the rows sampled in an
epoch."""

import keras
import numpy as np


class TaskFrequencies(keras.callbacks.Callback):
    """Adds `<task>_frequency`, the realised share of each task among the rows
    drawn in the epoch, to the epoch logs.

    For batches from `kmtl.data.make_sampled_dataset` (task sampling: uniform,
    proportional, temperature, annealed). The dataset counts the rows it draws
    for each task as it makes the batches (`SampledDataset.counts`); this
    callback reads the counts at the start and at the end of every epoch, so
    the frequencies are those of the epoch's batches, which sum to 1. Compare
    them with `SampledDataset.probabilities(epoch).mean(axis=0)`, the requested
    ones. A `keras.callbacks.TensorBoard` or `CSVLogger` placed after it in the
    callback list records them.

    Args:
        sampled: the `kmtl.data.SampledDataset` whose `.dataset` is trained on
            (anything with `counts`, a `(tasks,)` int variable, and
            `task_names`).

    Example:
        ```python
        sampled = kmtl.data.make_sampled_dataset(train, features, tasks,
                                                 "temperature", batch_size=256)
        model.fit(sampled.dataset, epochs=10,
                  callbacks=[kmtl.callbacks.TaskFrequencies(sampled)])
        # history["income_frequency"], history["never_married_frequency"]
        ```
    """

    def __init__(self, sampled):
        super().__init__()
        self.sampled = sampled
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = np.asarray(self.sampled.counts.numpy())

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self._start is None:
            return
        drawn = np.asarray(self.sampled.counts.numpy()) - self._start
        total = max(int(drawn.sum()), 1)
        for name, count in zip(self.sampled.task_names, drawn):
            logs[f"{name}_frequency"] = float(count) / total
