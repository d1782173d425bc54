"""Multiclass tasks: one class out of several, a softmax over the classes."""

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
from kmtl.tasks.losses import sparse_focal_loss


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
    weighs_classes = True
    focal_loss = staticmethod(sparse_focal_loss)

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

    # === Class weights ===

    def check_class_weight(self, class_weight):
        """A mapping `{class: weight}` or a list of weights in `classes`
        order, each a finite number > 0; with declared classes, every key a
        class and a list as long as `classes`."""
        classes = self.classes
        if isinstance(class_weight, (list, tuple)) and class_weight:
            if classes is not None and len(class_weight) != len(classes):
                raise ConfigError(
                    f"Task '{self.name}': a class_weight list gives one weight "
                    f"per class of {classes} ({len(classes)}). Received: "
                    f"class_weight={list(class_weight)!r}")
            for weight in class_weight:
                check_weight(self, weight)
            return
        if not isinstance(class_weight, dict) or not class_weight:
            raise ConfigError(
                f"Task '{self.name}': class_weight must be 'balanced', a "
                f"mapping {{class: weight}} or a list of weights in `classes` "
                f"order. Received: class_weight={class_weight!r}")
        for key, weight in class_weight.items():
            if not isinstance(key, LABEL_VALUES) or (
                    classes is not None and key not in classes):
                raise ConfigError(
                    f"Task '{self.name}': class_weight key {key!r} is not one "
                    f"of the classes {classes}. Received: "
                    f"class_weight={class_weight!r}. Key the weights by the "
                    f"classes as they appear in the column.")
            check_weight(self, weight)

    def fit_class_weight(self, values):
        """One weight per class, in `classes` order. `"balanced"`: `n / (k
        n_c)` over the k classes present in the training labels; a declared
        class absent from them weighs 1 (balanced or not given).

        Raises:
            DataError: a label outside the classes, a key that is no class,
                a class of the training labels without a weight, or a list of
                another length than the classes.
        """
        codes = self.encode_labels(values, np.ones(len(values), dtype=bool))
        mapping = self.class_weight
        if mapping == "balanced":
            present = np.unique(codes)
            balanced = compute_class_weight("balanced", classes=present, y=codes)
            weights = np.ones(len(self.classes))
            weights[present] = balanced
            return [float(w) for w in weights]
        if isinstance(mapping, (list, tuple)):
            if len(mapping) != len(self.classes):
                raise DataError(
                    f"Task '{self.name}': a class_weight list gives one weight "
                    f"per class; the training labels have {len(self.classes)} "
                    f"classes {self.classes}. Received: class_weight={mapping!r}")
            return [float(w) for w in mapping]
        unknown = [k for k in mapping if k not in self.classes]
        if unknown:
            raise DataError(
                f"Task '{self.name}': class_weight key {unknown[0]!r} is not a "
                f"class of column '{self.target_columns[0]}' (classes: "
                f"{self.classes}). Received: class_weight={mapping!r}. Key the "
                f"weights by the labels as they appear in the column (mind the "
                f"type: 1 is not '1').")
        present = set(np.unique(codes).tolist())
        missing = [c for i, c in enumerate(self.classes)
                   if i in present and c not in mapping]
        if missing:
            raise DataError(
                f"Task '{self.name}': training label {missing[0]!r} of column "
                f"'{self.target_columns[0]}' has no weight in class_weight="
                f"{mapping!r}. Add a weight for every class.")
        return [float(mapping.get(c, 1.0)) for c in self.classes]

    def class_weight_table(self):
        """One weight per class index."""
        return list(self.fitted_class_weight), True
