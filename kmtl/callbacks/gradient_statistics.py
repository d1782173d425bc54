"""`GradientStatistics`: per-task gradient norms and pairwise cosines."""

import keras
import numpy as np
import tensorflow as tf

from kmtl._checks import check_positive_int
from kmtl.measures.interference import cosine_matrix


class GradientStatistics(keras.callbacks.Callback):
    """Logs per-task gradient norms and pairwise gradient cosines of the shared
    variables, every `every` epochs, on fixed batches.

    Adds `<task>_grad_norm` and `grad_cosine_<task_a>_<task_b>` to the epoch logs, so a
    `keras.callbacks.TensorBoard` placed after it in the callback list writes them. The
    gradients are those of each task's unweighted loss (see
    `MultiTaskModel.task_gradients`), averaged over the given batches; a negative cosine
    is a conflict between two tasks (Yu et al., "Gradient Surgery for Multi-Task
    Learning", NeurIPS 2020, arXiv:2001.06782). Computing them costs one backward pass
    per task per batch, only on logging epochs, so training is not slowed.

    Args:
        data: a dataset of `(features, labels, sample_weights)` batches, e.g.
            `make_dataset(validation, ...)`; at most `batches` are used.
        every: int, default 1. Log every `every` epochs.
        batches: int, default 1. The number of batches of `data` the
            gradients are averaged over.

    Raises:
        ValueError: `every` or `batches` is not a positive integer.

    Examples:
        ```python
        statistics = kmtl.callbacks.GradientStatistics(probe, every=1)
        model.fit(train, validation_data=val, epochs=10,
                  callbacks=[statistics, keras.callbacks.TensorBoard("logs")])
        ```
    """

    def __init__(self, data, every=1, batches=1):
        super().__init__()
        check_positive_int(every, "every")
        check_positive_int(batches, "batches")
        self.data = data.take(batches)
        self.every = every
        self._compute = None

    def _statistics(self):
        if self._compute is None:
            self._compute = tf.function(self.model.task_gradients)
        total, count = None, 0
        for batch in self.data:
            gradients, _ = self._compute(batch)
            total = gradients if total is None else total + gradients
            count += 1
        mean = total / count
        norms = tf.norm(mean, axis=1).numpy()
        if mean.shape[1] == 0:
            norms[:] = np.nan  # nothing shared, nothing to measure (as the cosines)
        return norms, cosine_matrix(mean).numpy()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        norms, cosines = self._statistics()
        names = self.model.task_names
        for i, name in enumerate(names):
            logs[f"{name}_grad_norm"] = float(norms[i])
            for j in range(i + 1, len(names)):
                logs[f"grad_cosine_{name}_{names[j]}"] = float(cosines[i, j])
