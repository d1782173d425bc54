"""Binary tasks: one probability per row, positive vs every other label."""

import keras
import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.tasks.base import LABEL_VALUES
from kmtl.tasks.base import Task
from kmtl.tasks.base import check_weight
from kmtl.tasks.base import register
from kmtl.tasks.losses import binary_focal_loss


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
    weighs_classes = True
    focal_loss = staticmethod(binary_focal_loss)

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

    # === Class weights ===

    def check_class_weight(self, class_weight):
        """A mapping `{label: weight}` (`"positive"` / `"negative"` for the
        classes), each weight a finite number > 0."""
        if not isinstance(class_weight, dict) or not class_weight:
            raise ConfigError(
                f"Task '{self.name}': class_weight must be 'balanced' or a "
                f"mapping {{label: weight}} of the positive value and the other "
                f"label(s), or {{positive: w, negative: w}}. Received: "
                f"class_weight={class_weight!r}")
        for key, weight in class_weight.items():
            if not isinstance(key, LABEL_VALUES):
                raise ConfigError(
                    f"Task '{self.name}': the keys of class_weight are label "
                    f"values; {key!r} is not one. Received: "
                    f"class_weight={class_weight!r}")
            check_weight(self, weight)

    def fit_class_weight(self, values):
        """`{"positive": w, "negative": w}` from the training labels.

        Raises:
            DataError: a key that is neither a training label nor
                `positive`/`negative`, a training label without a weight,
                non-positive labels with different weights, or `"balanced"`
                without negative labels.
        """
        column = values.iloc[:, 0]
        is_positive = (column == self.positive).to_numpy()
        if self.class_weight == "balanced":
            if is_positive.all():
                raise DataError(
                    f"Task '{self.name}': class_weight='balanced' needs both "
                    f"classes, but every training label in column "
                    f"'{self.target_columns[0]}' is {self.positive!r}. Give "
                    f"the weights, or check the column and the split.")
            negative, positive = compute_class_weight(
                "balanced", classes=np.array([0, 1]), y=is_positive.astype(int))
            return {"positive": float(positive), "negative": float(negative)}
        mapping = self.class_weight
        labels = list(pd.unique(column))
        known = set(labels) | {self.positive}
        unknown = [k for k in mapping
                   if k not in known and k not in ("positive", "negative")]
        if unknown:
            raise DataError(
                f"Task '{self.name}': class_weight key {unknown[0]!r} is not a "
                f"label of column '{self.target_columns[0]}' (training labels: "
                f"{sorted(map(repr, labels))[:10]}) nor 'positive'/'negative'. "
                f"Received: class_weight={mapping!r}. Key the weights by the "
                f"labels as they appear in the column (mind the type: 1 is not "
                f"'1').")
        weights = {True: [], False: []}
        for label in [self.positive] + [v for v in labels if v != self.positive]:
            side = bool(label == self.positive)
            alias = "positive" if side else "negative"
            weight = mapping.get(label, mapping.get(alias))
            if weight is None:
                raise DataError(
                    f"Task '{self.name}': training label {label!r} of column "
                    f"'{self.target_columns[0]}' has no weight in class_weight="
                    f"{mapping!r}. Add {label!r} (or {alias!r}) to the mapping.")
            weights[side].append(float(weight))
        negatives = sorted(set(weights[False])) or [float(mapping.get(
            "negative", 1.0))]
        if len(negatives) > 1:
            raise DataError(
                f"Task '{self.name}': the labels other than the positive "
                f"{self.positive!r} are one class of a binary task, so they "
                f"need one weight; class_weight={mapping!r} gives them "
                f"{negatives}. Give them the same weight.")
        return {"positive": weights[True][0], "negative": negatives[0]}

    def class_weight_table(self):
        """`[[negative, positive]]`: one column of 0/1 labels."""
        fitted = self.fitted_class_weight
        return [[fitted["negative"], fitted["positive"]]], False
