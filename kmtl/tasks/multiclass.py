"""Multiclass tasks: one class out of several, a softmax over the classes."""

import keras
import numpy as np
import pandas as pd

from kmtl.errors import DataError
from kmtl.tasks.base import Task
from kmtl.tasks.base import register


@register("multiclass")
class MulticlassTask(Task):
    """One class per row: the head is `Dense(len(classes), "softmax")`, the loss
    sparse categorical cross-entropy on the class index.

    Takes the arguments of `kmtl.Task`; `classes` (the class values in output
    order, sorted training labels by default) is its own.

    Output shape:
        `(batch, len(classes))`: class probabilities.

    Raises:
        ConfigError: `units` before the classes are known (declare them or fit).

    Examples:
        >>> task = Task("species", "multiclass").fit(frame)
        >>> task.classes
        ['Adelie', 'Chinstrap', 'Gentoo']
    """

    default_loss = "SparseCategoricalCrossentropy"
    default_metrics = ("accuracy",)
    activation = "softmax"

    def metric_factories(self):
        return {
            "accuracy": lambda name: keras.metrics.SparseCategoricalAccuracy(
                name=name
            ),
            "top_k_accuracy": lambda name: keras.metrics.SparseTopKCategoricalAccuracy(
                name=name
            ),
            "crossentropy": lambda name: keras.metrics.SparseCategoricalCrossentropy(
                name=name
            ),
        }

    @property
    def units(self):
        return self._class_count()

    def fit_labels(self, values):
        """The classes, sorted (as text), when not declared."""
        if self.classes is None:
            self.classes = sorted(pd.unique(values.iloc[:, 0]).tolist(), key=str)

    def encode_labels(self, values, labelled):
        """int32 class indices `(rows,)`.

        Raises:
            DataError: a label that is not one of the classes.
        """
        index = {c: i for i, c in enumerate(self.classes)}
        column = values.iloc[:, 0]
        codes = column.map(index)
        if codes.isna().any():
            bad = column[codes.isna()].iloc[0]
            raise DataError(
                f"Task '{self.name}': label {bad!r} in column "
                f"'{self.target_columns[0]}' is not one of the declared classes "
                f"{self.classes}. Add it to `classes` or fix the data."
            )
        labels = np.zeros((len(labelled),), dtype="int32")
        labels[labelled] = codes.to_numpy(dtype="int32")
        return labels

    def decode(self, predictions):
        """The most probable class as `<name>`, and each class's probability as
        `<name>_p_<class>`."""
        predictions = np.asarray(predictions)
        classes = np.asarray(self.classes, dtype=object)
        columns = {self.name: classes[predictions.argmax(axis=1)]}
        for i, cls in enumerate(self.classes):
            columns[f"{self.name}_p_{cls}"] = predictions[:, i]
        return columns

    def strata(self, frame):
        return self._label_strings(frame)
