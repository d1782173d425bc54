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

    Output shape:
        `(batch, len(target))`: one probability per label.

    Raises:
        ConfigError: a single target column.

    Examples:
        >>> task = Task("tags", "multilabel", target=["sports", "news"])
        >>> task.units
        2
    """

    default_loss = "BinaryCrossentropy"
    default_metrics = ("auc",)
    activation = "sigmoid"

    def check_target(self):
        if isinstance(self.target, str):
            raise ConfigError(
                f"Task '{self.name}': a multilabel task needs a list of 0/1 target "
                f"columns. Received: target={self.target!r}"
            )
        if self.classes is None:
            self.classes = list(self.target_columns)

    def metric_factories(self):
        return {
            "auc": lambda name: keras.metrics.AUC(
                name=name, multi_label=True, num_labels=self.units
            ),
            "accuracy": lambda name: keras.metrics.BinaryAccuracy(name=name),
        }

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
