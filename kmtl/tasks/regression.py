"""Regression tasks: one or several real-valued targets."""

import keras
import numpy as np

from kmtl.tasks.base import Task
from kmtl.tasks.base import register


@register("regression")
class RegressionTask(Task):
    """Real-valued targets, one output unit per target column.

    The loss (mean squared error by default) is taken on standardized values,
    `(y - target_mean) / target_std` (see `standardize`), so a target in grams
    does not swamp a cross-entropy; the head outputs label units: a linear
    `Dense(units)` named `<task>_head`, then a `Rescaling(target_std,
    target_mean)` named after the task.

    Takes the arguments of `kmtl.Task`; `target_mean` and `target_std` (fitted
    on the training labels when not given) are its own.

    Output shape:
        `(batch, len(target))`, in label units.

    Examples:
        >>> task = Task("body_mass_g", "regression").fit(frame)
        >>> task.target_mean, task.target_std
        ([4201.75...], [801.25...])
    """

    default_loss = "MeanSquaredError"
    default_metrics = ("mae", "rmse")

    def metric_factories(self):
        return {
            "mae": lambda name: keras.metrics.MeanAbsoluteError(name=name),
            "rmse": lambda name: keras.metrics.RootMeanSquaredError(name=name),
            "mse": lambda name: keras.metrics.MeanSquaredError(name=name),
        }

    @property
    def units(self):
        return len(self.target_columns)

    def fit_labels(self, values):
        """The labels' mean and population standard deviation (1 where the
        target is constant), when not declared.

        Raises:
            DataError: a label that is not a number.
        """
        if self.target_mean is None:
            numeric = self._numeric_labels(values)
            self.target_mean = [float(v) for v in numeric.mean(axis=0)]
            std = numeric.std(axis=0)
            self.target_std = [float(v) if v > 0 else 1.0 for v in std]

    def encode_labels(self, values, labelled):
        """float32 `(rows, units)` in label units.

        Raises:
            DataError: a label that is not a number.
        """
        labels = np.zeros((len(labelled), self.units), dtype="float32")
        labels[labelled] = self._numeric_labels(values)
        return labels

    def decode(self, predictions):
        """`<name>` for one target, else `<name>_<column>` per target column."""
        predictions = np.asarray(predictions)
        if predictions.shape[1] == 1:
            return {self.name: predictions[:, 0]}
        return {f"{self.name}_{c}": predictions[:, i]
                for i, c in enumerate(self.target_columns)}

    def standardize(self, values):
        """`(values - target_mean) / target_std`; unchanged before `fit`."""
        if self.target_mean is None:
            return values
        mean = np.asarray(self.target_mean, dtype="float32")
        std = np.asarray(self.target_std, dtype="float32")
        return (values - mean) / std

    def build_head(self, x):
        """`Dense(units)` (`<task>_head`), then `Rescaling(target_std,
        target_mean)` (`<task>`): outputs in label units, float32."""
        x = keras.layers.Dense(self.units, dtype="float32",
                               name=f"{self.name}_head")(x)
        return keras.layers.Rescaling(
            scale=self.target_std, offset=self.target_mean, dtype="float32",
            name=self.name)(x)
