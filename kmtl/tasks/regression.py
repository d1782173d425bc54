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

    Metrics, all in label units (they compare the labels with the head's
    output, not the standardized values the loss sees); the log key is
    `<task>_<metric>`:

    - `mae`, `mse`: the mean absolute (squared) error over every target
      column; with several columns, the mean of the columns' MAEs (MSEs).
    - `rmse`: the root of `mse`, so with several columns the root of the
      mean of the columns' MSEs, not the mean of their RMSEs.
    - `mae_<target>`, `rmse_<target>`, `mse_<target>`: one target column's
      error in its own units, `<target>` the column name made a valid metric
      name (`kmtl.tasks.metrics.column_suffix`: `"flipper length (mm)"` ->
      `flipper_length_mm`). `mae_per_target` (`rmse_per_target`,
      `mse_per_target`) expands into one per target column.

    With targets in different units (grams and millimetres), the averages
    over columns mix units; the per-target metrics are the ones to read.
    Default: `mae`, `rmse`, and `mae_per_target`, `rmse_per_target` when
    there are 2 to `PER_COLUMN_DEFAULT_LIMIT` (10) target columns. A task's
    `metrics` holds the expanded names.

    Output shape:
        `(batch, len(target))`, in label units.

    Examples:
        >>> task = Task("body_mass_g", "regression").fit(frame)
        >>> task.target_mean, task.target_std
        ([4201.75...], [801.25...])
        >>> Task("size", "regression", target=["mass_g", "length_mm"]).metrics
        ['mae', 'rmse', 'mae_mass_g', 'mae_length_mm', 'rmse_mass_g',
         'rmse_length_mm']
    """

    default_loss = "MeanSquaredError"
    column_metrics = {
        "mae": lambda name: keras.metrics.MeanAbsoluteError(name=name),
        "rmse": lambda name: keras.metrics.RootMeanSquaredError(name=name),
        "mse": lambda name: keras.metrics.MeanSquaredError(name=name),
    }
    column_kind = "target"

    @property
    def default_metrics(self):
        """`("mae", "rmse")`, and `"mae_per_target"`, `"rmse_per_target"` for
        2 to `PER_COLUMN_DEFAULT_LIMIT` target columns."""
        return ("mae", "rmse") + self._per_column_defaults(
            ["mae_per_target", "rmse_per_target"])

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
