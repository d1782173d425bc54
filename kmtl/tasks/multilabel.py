"""Multilabel tasks: several independent 0/1 labels per row."""

import keras
import numpy as np

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.tasks.base import Task
from kmtl.tasks.base import register


@register("multilabel")
class MultilabelTask(Task):
    """Several yes/no labels per row, one 0/1 target column each: the head is
    `Dense(len(classes), "sigmoid")`, the loss binary cross-entropy averaged
    over the labels.

    Takes the arguments of `kmtl.Task`; `target` must be a list of columns,
    and `classes` names the labels (default: the target columns).

    Metrics (the log key is `<task>_<metric>`; the ROC AUCs are Keras's, from
    200 thresholds):

    - `auc`: the macro-averaged ROC AUC, the mean of the labels' AUCs (the
      name kmtl has always logged); `auc_macro` is the same number under a
      name that says the averaging.
    - `auc_micro`: the micro-averaged ROC AUC, one AUC over every (row,
      label) pair, so frequent labels weigh more.
    - `auc_<label>`: one label's AUC, `<label>` its class name made a valid
      metric name (`kmtl.tasks.metrics.column_suffix`: `"Sci-Fi"` ->
      `Sci_Fi`; a name taken by another metric gets the label's index
      appended, `auc_micro_1`). `auc_per_label` expands into all of them.
    - `accuracy` (over every label at threshold 0.5), `accuracy_<label>`
      and `accuracy_per_label`.

    Default: `auc`, `auc_micro`, and `auc_per_label` when there are 2 to
    `PER_COLUMN_DEFAULT_LIMIT` (10) labels; list `auc_per_label` in `metrics`
    to get it for more. A task's `metrics` holds the expanded names.

    Output shape:
        `(batch, len(target))`: one probability per label.

    Raises:
        ConfigError: a single target column.

    Examples:
        >>> task = Task("tags", "multilabel", target=["sports", "news"])
        >>> task.units, task.metrics
        (2, ['auc', 'auc_micro', 'auc_sports', 'auc_news'])
    """

    default_loss = "BinaryCrossentropy"
    activation = "sigmoid"
    column_metrics = {
        "auc": lambda name: keras.metrics.AUC(name=name),
        "accuracy": lambda name: keras.metrics.BinaryAccuracy(name=name),
    }
    column_kind = "label"

    @property
    def default_metrics(self):
        """`("auc", "auc_micro")`, and `"auc_per_label"` for 2 to
        `PER_COLUMN_DEFAULT_LIMIT` labels."""
        return ("auc", "auc_micro") + self._per_column_defaults(["auc_per_label"])

    def check_target(self):
        if isinstance(self.target, str):
            raise ConfigError(
                f"Task '{self.name}': a multilabel task needs a list of 0/1 target "
                f"columns. Received: target={self.target!r}"
            )
        if self.classes is None:
            self.classes = list(self.target_columns)

    def metric_factories(self):
        def macro(name):
            return keras.metrics.AUC(name=name, multi_label=True,
                                     num_labels=self.units)

        return {
            "auc": macro,
            "auc_macro": macro,
            "auc_micro": lambda name: keras.metrics.AUC(name=name,
                                                        multi_label=False),
            "accuracy": lambda name: keras.metrics.BinaryAccuracy(name=name),
        }

    def metric_columns(self):
        """The label names (`classes`)."""
        return self.classes

    @property
    def units(self):
        return self._class_count()

    def encode_labels(self, values, labelled):
        """float32 `(rows, labels)` of 0/1.

        Raises:
            DataError: a label that is not a number, or not 0 or 1.
        """
        labels = np.zeros((len(labelled), self.units), dtype="float32")
        labels[labelled] = self._numeric_labels(values)
        bad = ~np.isin(labels[labelled], (0.0, 1.0))
        if bad.any():
            raise DataError(
                f"Task '{self.name}': multilabel columns must hold 0/1; "
                f"found {labels[labelled][bad][0]!r}. Fix the data."
            )
        return labels

    def decode(self, predictions):
        """One column `<name>_<label>` per label."""
        predictions = np.asarray(predictions)
        return {f"{self.name}_{c}": predictions[:, i]
                for i, c in enumerate(self.classes)}
