"""Binary tasks: one probability per row, positive vs every other label."""

import keras
import numpy as np
import pandas as pd

from kmtl.errors import DataError
from kmtl.tasks.base import Task
from kmtl.tasks.base import register


@register("binary")
class BinaryTask(Task):
    """A yes/no target: the head is `Dense(1, "sigmoid")`, the loss binary
    cross-entropy, the label 1 where the target equals `positive`.

    The only derivable type: a binary task may be derived from other binary
    tasks (ESMM, `derived_from`) and declared without target (`target=[]`).
    Takes the arguments of `kmtl.Task`; `positive` is its own.

    Output shape:
        `(batch, 1)`: the probability of `positive`.

    Examples:
        >>> task = Task("sex", "binary", positive="female")
        >>> task.fit(frame).encode(frame)  # ([[1.], [0.], [0.]], [1., 1., 0.])
    """

    default_loss = "BinaryCrossentropy"
    default_metrics = ("auc", "accuracy")
    activation = "sigmoid"
    derivable = True
    allows_no_target = True

    def metric_factories(self):
        return {
            "auc": lambda name: keras.metrics.AUC(name=name),
            # Area under the precision-recall curve (Davis and Goadrich, ICML
            # 2006, interpolated): the measure for a rare positive class.
            "pr_auc": lambda name: keras.metrics.AUC(curve="PR", name=name),
            "accuracy": lambda name: keras.metrics.BinaryAccuracy(name=name),
            "precision": lambda name: keras.metrics.Precision(name=name),
            "recall": lambda name: keras.metrics.Recall(name=name),
            "crossentropy": lambda name: keras.metrics.BinaryCrossentropy(name=name),
        }

    @property
    def units(self):
        return 1

    def fit_labels(self, values):
        """Infers `positive` (1 for 0/1 or boolean labels) and checks it occurs.

        Raises:
            DataError: string labels without `positive`, a `positive` that
                never occurs, or 0/1 labels that are all 0 (one class).
        """
        column = self.target_columns[0]
        distinct = pd.unique(values.iloc[:, 0])
        inferred = self.positive is None
        if inferred:
            if set(distinct) <= {0, 1} or set(distinct) <= {False, True}:
                self.positive = 1
            else:
                shown = sorted(map(str, distinct))[:10]
                raise DataError(
                    f"Task '{self.name}': binary labels in column '{column}' are "
                    f"{shown}; set `positive` to the value that counts as positive."
                )
        if self.positive not in set(distinct):
            shown = sorted(map(str, distinct))[:10]
            if inferred:
                raise DataError(
                    f"Task '{self.name}': every training label in column "
                    f"'{column}' is {shown[0]}, so the positive class 1 never "
                    f"occurs; a binary task needs both classes in the training "
                    f"split. Check the column and the split (a larger table, "
                    f"split.method: stratified), or remove the task.")
            raise DataError(
                f"Task '{self.name}': positive={self.positive!r} never occurs in "
                f"column '{column}' (values: {shown}). Fix `positive`; mind "
                f"leading spaces and the column's type."
            )

    def encode_labels(self, values, labelled):
        labels = np.zeros((len(labelled), 1), dtype="float32")
        positive = values.iloc[:, 0] == self.positive
        labels[labelled, 0] = positive.to_numpy(dtype="float32")
        return labels

    def decode(self, predictions):
        return {self.name: np.asarray(predictions)[:, 0]}

    def strata(self, frame):
        return self._label_strings(frame)
