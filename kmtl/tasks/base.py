"""Tasks: what a multi-task model predicts, how its labels are encoded and scored.

A `Task` is a small object that owns its target column(s), its label encoding, its
loss and its metrics, in the spirit of TensorFlow Recommenders' tasks; the multi-task
model combines the task losses. Missing labels are never dropped or filled: they
become a sample weight of 0 for that task (see `Task.encode`).

A binary task may be *derived* from other binary tasks (`derived_from`): its
prediction is the product of theirs, as ESMM's CTCVR = CTR x CVR, so a task
labelled on a subset of rows (CVR, on clicked rows) is trained through a task
labelled on every row. A task may also have no target column at all
(`target=[]`): an output that only ever learns through a task derived from it.
"""

import inspect
import math

import keras
import numpy as np
import pandas as pd
from keras.src.losses.losses import LossFunctionWrapper

from kmtl.errors import ConfigError
from kmtl.errors import DataError

TASK_TYPES = ("binary", "multiclass", "multilabel", "regression")

DEFAULT_LOSSES = {
    "binary": "BinaryCrossentropy",
    "multiclass": "SparseCategoricalCrossentropy",
    "multilabel": "BinaryCrossentropy",
    "regression": "MeanSquaredError",
}

DEFAULT_METRICS = {
    "binary": ("auc", "accuracy"),
    "multiclass": ("accuracy",),
    "multilabel": ("auc",),
    "regression": ("mae", "rmse"),
}

# The reduction every task loss uses: the mean over the labelled rows of a batch.
# Keras divides with `divide_no_nan`, so a batch without labels for a task adds 0.
LOSS_REDUCTION = "mean_with_sample_weight"


def _metric_factories(task_type, units):
    """Metric constructors by short name, for one task type."""
    if task_type == "binary":
        return {
            "auc": lambda name: keras.metrics.AUC(name=name),
            "accuracy": lambda name: keras.metrics.BinaryAccuracy(name=name),
            "precision": lambda name: keras.metrics.Precision(name=name),
            "recall": lambda name: keras.metrics.Recall(name=name),
            "crossentropy": lambda name: keras.metrics.BinaryCrossentropy(name=name),
        }
    if task_type == "multiclass":
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
    if task_type == "multilabel":
        return {
            "auc": lambda name: keras.metrics.AUC(
                name=name, multi_label=True, num_labels=units
            ),
            "accuracy": lambda name: keras.metrics.BinaryAccuracy(name=name),
        }
    return {
        "mae": lambda name: keras.metrics.MeanAbsoluteError(name=name),
        "rmse": lambda name: keras.metrics.RootMeanSquaredError(name=name),
        "mse": lambda name: keras.metrics.MeanSquaredError(name=name),
    }


class Task:
    """One prediction target of a multi-task model.

    Args:
        name: str. The task's name: the key of its model output, its label and its
            sample weight, and the prefix of its logs (`<name>_loss`, `<name>_auc`).
        type: str. One of `"binary"`, `"multiclass"`, `"multilabel"`,
            `"regression"`.
        target: str or list of str. The label column(s). Defaults to `name`.
            Multilabel tasks take one 0/1 column per label; regression tasks may
            take several columns (one output unit each). An empty list `[]`
            declares a binary task without labels: an output that learns only
            through the tasks derived from it (ESMM's CVR), with sample weight 0
            on every row, so it adds 0 to every loss and gets weight 0 from every
            weighting method.
        positive: The label value that counts as positive for a binary task. Every
            other non-missing value is negative. Defaults to 1 (or True) when the
            labels are 0/1 or boolean; string labels need it.
        classes: list. The class values of a multiclass task, in output order.
            Inferred (sorted) from the training labels when not given; a label
            outside a declared list is an error.
        loss: A Keras loss identifier (string, config dict or `keras.losses.Loss`).
            Defaults by type: binary and multilabel cross-entropy, sparse
            categorical cross-entropy, mean squared error. It is always reduced as
            the mean over the labelled rows (`reduction="mean_with_sample_weight"`).
        loss_weight: float. The task's static loss weight; default 1.0, or 0.0
            for a task without target (its loss is always 0).
        metrics: list of str. Metric names for this type (binary: auc, accuracy,
            precision, recall, crossentropy; multiclass: accuracy, top_k_accuracy,
            crossentropy; multilabel: auc, accuracy; regression: mae, rmse, mse).
            Defaults: binary auc + accuracy; multiclass accuracy; multilabel auc;
            regression mae + rmse.
        target_mean, target_std: floats or lists (regression only). The training
            labels' mean and standard deviation. The model's regression head outputs
            label units (`z * std + mean`) and the loss is taken on standardized
            values, so a target in grams does not swamp a cross-entropy. Filled in
            by `fit` when not given.
        derived_from: list of str or None. Binary tasks whose predicted
            probabilities, multiplied, are this binary task's prediction: it has
            no tower or head of its own, but its own label, loss, metrics and
            model output. Ma et al., "Entire Space Multi-Task Model: An Effective
            Approach for Estimating Post-Click Conversion Rate", SIGIR 2018
            (arXiv:1804.07931): `pCTCVR = pCTR x pCVR`. `derivation_order` checks
            the names against the other tasks.

    Raises:
        ConfigError: for an unknown type, metric or a bad weight; a task without
            target that is not binary; `derived_from` on a non-binary task, with
            fewer than two distinct names, or naming the task itself.

    Example:

    >>> task = Task("income", "binary", target="income_50k", positive="50000+.")
    >>> task.units
    1
    >>> esmm = [Task("ctr", "binary", target="click"),
    ...         Task("cvr", "binary", target=[]),
    ...         Task("ctcvr", "binary", target="purchase",
    ...              derived_from=["ctr", "cvr"])]
    >>> [t.name for t in kmtl.tasks.derivation_order(esmm)]
    ['ctr', 'cvr', 'ctcvr']
    """

    def __init__(
        self,
        name,
        type,
        target=None,
        positive=None,
        classes=None,
        loss=None,
        loss_weight=None,
        metrics=None,
        target_mean=None,
        target_std=None,
        derived_from=None,
    ):
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(
                f"Task name must be a Python identifier (it names model outputs "
                f"and logs). Received: name={name!r}"
            )
        if type not in TASK_TYPES:
            raise ConfigError(
                f"Task '{name}': unknown type {type!r}. Use one of {TASK_TYPES}."
            )
        self.name = name
        self.type = type
        self.target = target if target is not None else name
        if isinstance(self.target, tuple):
            self.target = list(self.target)
        if self.target == [] and type != "binary":
            raise ConfigError(
                f"Task '{name}': only a binary task may have no target column "
                f"(target=[]): its probability feeds the tasks derived from it. "
                f"Give a target for this {type} task."
            )
        if type == "multilabel" and isinstance(self.target, str):
            raise ConfigError(
                f"Task '{name}': a multilabel task needs a list of 0/1 target "
                f"columns. Received: target={self.target!r}"
            )
        self.positive = positive
        self.classes = list(classes) if classes is not None else None
        if type == "multilabel" and self.classes is None:
            self.classes = list(self.target_columns)
        self.loss = loss if loss is not None else DEFAULT_LOSSES[type]
        if loss_weight is None:
            loss_weight = 1.0 if self.has_labels else 0.0
        try:
            self.loss_weight = float(loss_weight)
        except (TypeError, ValueError):
            self.loss_weight = math.nan
        if not math.isfinite(self.loss_weight) or self.loss_weight < 0:
            raise ConfigError(
                f"Task '{name}': loss_weight must be a finite number >= 0. "
                f"Received: loss_weight={loss_weight!r}"
            )
        if metrics is None:
            metrics = DEFAULT_METRICS[type] if self.has_labels else ()
        self.metrics = list(metrics)
        known = _metric_factories(type, 1)
        for metric in self.metrics:
            if metric not in known:
                raise ConfigError(
                    f"Task '{name}': unknown metric {metric!r} for a {type} task. "
                    f"Use any of {sorted(known)}."
                )
        self.target_mean = target_mean
        self.target_std = target_std
        self.derived_from = _check_derived_from(name, type, derived_from)

    # --- Shapes -------------------------------------------------------------

    @property
    def target_columns(self):
        """The label columns, as a list."""
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @property
    def has_labels(self):
        """False for a task declared without target column (`target=[]`)."""
        return bool(self.target_columns)

    @property
    def units(self):
        """Output units of the task's head: (batch, units)."""
        if self.type == "binary":
            return 1
        if self.type == "regression":
            return len(self.target_columns)
        if self.classes is None:
            raise ConfigError(
                f"Task '{self.name}': classes are unknown; call fit() on training "
                f"data or declare classes."
            )
        return len(self.classes)

    @property
    def activation(self):
        """The head's output activation: probabilities for classification."""
        return {
            "binary": "sigmoid",
            "multiclass": "softmax",
            "multilabel": "sigmoid",
            "regression": None,
        }[self.type]

    # --- Loss and metrics ---------------------------------------------------

    def build_loss(self):
        """A fresh `keras.losses.Loss` reduced over labelled rows only."""
        loss = self.loss
        if isinstance(loss, str) and loss in DEFAULT_LOSSES.values():
            loss = {"class_name": loss, "config": {}}
        try:
            obj = keras.losses.get(loss)
        except (ValueError, TypeError) as error:
            raise ConfigError(
                f"Task '{self.name}': unknown loss {self.loss!r} ({error}). Use a "
                f"Keras loss name such as 'mean_squared_error' or 'huber'."
            ) from None
        if isinstance(obj, keras.losses.Loss):
            config = {**obj.get_config(), "reduction": LOSS_REDUCTION}
            return obj.__class__.from_config(config)
        return LossFunctionWrapper(
            obj, reduction=LOSS_REDUCTION, name=getattr(obj, "__name__", None)
        )

    def build_metrics(self):
        """Fresh metric objects named `<task>_<metric>`."""
        factories = _metric_factories(self.type, self.units)
        return [factories[m](f"{self.name}_{m}") for m in self.metrics]

    def standardize(self, values):
        """Maps regression labels or predictions to the loss's standardized scale."""
        if self.type != "regression" or self.target_mean is None:
            return values
        mean = np.asarray(self.target_mean, dtype="float32")
        std = np.asarray(self.target_std, dtype="float32")
        return (values - mean) / std

    # --- Labels -------------------------------------------------------------

    def check_columns(self, frame, where="the data"):
        """Raises DataError naming any target column missing from `frame`."""
        missing = [c for c in self.target_columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"Task '{self.name}': target column(s) {missing} not found in "
                f"{where}. Available columns: {list(frame.columns)}. Fix the task's "
                f"`target` or the data."
            )

    def labelled(self, frame):
        """`(rows,)` bool: which rows of `frame` carry a label for this task
        (every target column filled; no row for a task without target)."""
        if not self.has_labels:
            return np.zeros(len(frame), dtype=bool)
        return frame[self.target_columns].notna().all(axis=1).to_numpy()

    def fit(self, frame):
        """Fills what was not declared (classes, positive, target scale) from the
        training split and checks that the task has labels.

        Raises:
            DataError: a target column is absent, the task has no labels, or binary
                string labels come without `positive`.
        """
        if not self.has_labels:
            return self
        self.check_columns(frame, "the training data")
        labelled = self.labelled(frame)
        if not labelled.any():
            raise DataError(
                f"Task '{self.name}': no row of the training data has a label in "
                f"{self.target_columns}. Check the target column and the split, or "
                f"remove the task."
            )
        values = frame.loc[labelled, self.target_columns]
        if self.type == "binary" and self.positive is None:
            distinct = set(pd.unique(values.iloc[:, 0]))
            if distinct <= {0, 1} or distinct <= {False, True}:
                self.positive = 1
            else:
                shown = sorted(map(str, distinct))[:10]
                raise DataError(
                    f"Task '{self.name}': binary labels in column "
                    f"'{self.target_columns[0]}' are {shown}; set `positive` to the "
                    f"value that counts as positive."
                )
        if self.type == "binary":
            distinct = pd.unique(values.iloc[:, 0])
            if self.positive not in set(distinct):
                shown = sorted(map(str, distinct))[:10]
                raise DataError(
                    f"Task '{self.name}': positive={self.positive!r} never occurs in "
                    f"column '{self.target_columns[0]}' (values: {shown}). Fix "
                    f"`positive`; mind leading spaces and the column's type."
                )
        if self.type == "multiclass" and self.classes is None:
            self.classes = sorted(pd.unique(values.iloc[:, 0]).tolist(), key=str)
        if self.type == "regression" and self.target_mean is None:
            numeric = self._numeric_labels(values)
            self.target_mean = [float(v) for v in numeric.mean(axis=0)]
            std = numeric.std(axis=0)
            self.target_std = [float(v) if v > 0 else 1.0 for v in std]
        return self

    def _numeric_labels(self, values):
        try:
            return values.astype("float64").to_numpy()
        except (TypeError, ValueError):
            column = self.target_columns[0]
            bad = values[column][pd.to_numeric(values[column], errors="coerce").isna()]
            raise DataError(
                f"Task '{self.name}': {self.type} labels in column '{column}' must "
                f"be numbers; found {bad.iloc[0]!r}. Fix the column or the task type."
            ) from None

    def encode(self, frame):
        """Encodes the labels of `frame` for training.

        Returns:
            `(labels, sample_weight)`: labels as float32 `(rows, units)` (binary,
            multilabel, regression) or int32 `(rows,)` class indices (multiclass);
            sample_weight float32 `(rows,)`, 1 where the row is labelled and 0 where
            it is not (0 everywhere for a task without target). Unlabelled rows
            carry a placeholder label of 0 that the 0 weight removes from losses
            and metrics.

        Raises:
            DataError: a target column is absent or a label is not a declared class.
        """
        self.check_columns(frame)
        labelled = self.labelled(frame)
        weight = labelled.astype("float32")
        rows = len(frame)
        if not self.has_labels:
            return np.zeros((rows, self.units), dtype="float32"), weight
        values = frame.loc[labelled, self.target_columns]
        if self.type == "binary":
            column = values.iloc[:, 0]
            positive = column == self.positive
            labels = np.zeros((rows, 1), dtype="float32")
            labels[labelled, 0] = positive.to_numpy(dtype="float32")
        elif self.type == "multiclass":
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
            labels = np.zeros((rows,), dtype="int32")
            labels[labelled] = codes.to_numpy(dtype="int32")
        else:
            labels = np.zeros((rows, self.units), dtype="float32")
            labels[labelled] = self._numeric_labels(values)
            if self.type == "multilabel":
                bad = ~np.isin(labels[labelled], (0.0, 1.0))
                if bad.any():
                    raise DataError(
                        f"Task '{self.name}': multilabel columns must hold 0/1; "
                        f"found {labels[labelled][bad][0]!r}. Fix the data."
                    )
        return labels, weight

    def decode(self, predictions):
        """Turns one task's predictions `(rows, units)` into DataFrame columns."""
        predictions = np.asarray(predictions)
        if self.type == "binary":
            return {self.name: predictions[:, 0]}
        if self.type == "multiclass":
            columns = {self.name: np.asarray(self.classes, dtype=object)[
                predictions.argmax(axis=1)
            ]}
            for i, cls in enumerate(self.classes):
                columns[f"{self.name}_p_{cls}"] = predictions[:, i]
            return columns
        if self.type == "multilabel":
            return {f"{self.name}_{c}": predictions[:, i]
                    for i, c in enumerate(self.classes)}
        if predictions.shape[1] == 1:
            return {self.name: predictions[:, 0]}
        return {f"{self.name}_{c}": predictions[:, i]
                for i, c in enumerate(self.target_columns)}

    # --- Config -------------------------------------------------------------

    def get_config(self):
        loss = self.loss
        if isinstance(loss, keras.losses.Loss):
            loss = keras.losses.serialize(loss)
        config = {
            "name": self.name,
            "type": self.type,
            "target": self.target,
            "positive": _plain(self.positive),
            "classes": _plain(self.classes),
            "loss": loss,
            "loss_weight": self.loss_weight,
            "metrics": list(self.metrics),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "derived_from": _plain(self.derived_from),
        }
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        derived = (f", derived_from={self.derived_from!r}" if self.derived_from
                   else "")
        return (f"Task(name={self.name!r}, type={self.type!r}, "
                f"target={self.target!r}{derived})")


def _check_derived_from(name, task_type, derived_from):
    """`derived_from` as a list of task names, or None; checks what one task can."""
    if derived_from is None:
        return None
    if isinstance(derived_from, str) or not isinstance(derived_from, (list, tuple)):
        raise ConfigError(
            f"Task '{name}': derived_from must be a list of task names, e.g. "
            f"['ctr', 'cvr']. Received: derived_from={derived_from!r}"
        )
    parents = list(derived_from)
    if task_type != "binary":
        raise ConfigError(
            f"Task '{name}': only a binary task can be derived (its prediction is "
            f"the product of other tasks' probabilities); this one is {task_type}. "
            f"Received: derived_from={parents!r}"
        )
    if name in parents:
        raise ConfigError(
            f"Task '{name}' cannot derive from itself. Received: "
            f"derived_from={parents!r}"
        )
    if len(set(parents)) != len(parents) or len(parents) < 2:
        raise ConfigError(
            f"Task '{name}': derived_from needs at least two distinct task names. "
            f"Received: derived_from={parents!r}"
        )
    return parents


def derivation_order(tasks):
    """Orders tasks so that every derived task follows the tasks it derives from.

    Args:
        tasks: list of `Task`.

    Returns:
        A new list of the same tasks; tasks that derive from nothing keep their
        order and come first.

    Raises:
        ConfigError: `derived_from` names a task that is not in `tasks` or one
            that is not binary, or the derivations form a cycle.
    """
    by_name = {t.name: t for t in tasks}
    for task in tasks:
        for parent in task.derived_from or ():
            if parent not in by_name:
                raise ConfigError(
                    f"Task '{task.name}': derived_from names unknown task "
                    f"{parent!r}. Tasks are {list(by_name)}."
                )
            if by_name[parent].type != "binary":
                raise ConfigError(
                    f"Task '{task.name}': derived_from names {parent!r}, a "
                    f"{by_name[parent].type} task; a derived task multiplies "
                    f"binary tasks' probabilities."
                )
    order, state = [], {}

    def visit(task, path):
        if state.get(task.name) == "done":
            return
        if state.get(task.name) == "open":
            cycle = path[path.index(task.name):] + [task.name]
            raise ConfigError(
                f"Tasks derive from each other in a cycle: {' -> '.join(cycle)}. "
                f"Break it in `derived_from`."
            )
        state[task.name] = "open"
        for parent in task.derived_from or ():
            visit(by_name[parent], path + [task.name])
        state[task.name] = "done"
        order.append(task)

    for task in [t for t in tasks if not t.derived_from] + tasks:
        visit(task, [])
    return order


def _plain(value):
    """Numpy scalars to Python ones, so configs serialize to JSON and YAML."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def get(identifier):
    """Returns a `Task` from a Task, or a config dict (`{"name":..., "type":...}`)."""
    if isinstance(identifier, Task):
        return identifier
    if isinstance(identifier, dict):
        allowed = set(inspect.signature(Task.__init__).parameters) - {"self"}
        unknown = set(identifier) - allowed
        if unknown:
            raise ConfigError(
                f"Task {identifier.get('name', '?')!r}: unknown key(s) "
                f"{sorted(unknown)}. Allowed keys: {sorted(allowed)}."
            )
        for key in ("name", "type"):
            if key not in identifier:
                raise ConfigError(
                    f"A task is missing the key '{key}': {identifier}. Every task "
                    f"needs `name` and `type` ({', '.join(TASK_TYPES)})."
                )
        return Task.from_config(identifier)
    raise ConfigError(f"Cannot interpret a task from {identifier!r}.")
