"""Multilabel tasks: several independent 0/1 labels per row."""

import inspect

import keras
import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.tasks.base import Task
from kmtl.tasks.base import check_weight
from kmtl.tasks.base import register
from kmtl.tasks.losses import binary_focal_loss

# The most unknown labels an error lists.
SHOWN_LABELS = 5


@register("multilabel")
class MultilabelTask(Task):
    """Several yes/no labels per row: the head is `Dense(len(classes),
    "sigmoid")`, the loss binary cross-entropy averaged over the labels.

    The labels come from one of two shapes of data:

    - **0/1 columns**, one per label: `target=["sports", "news"]`; `classes`
      names the labels (default: the target columns).
    - **One column of delimited labels**: `target="tags"` with
      `delimiter="|"`, cells such as `"sports|news"`. Each cell is split on the
      delimiter, whitespace around each label is stripped, empty pieces are
      dropped and a label repeated in a cell counts once. A missing cell
      (NaN, None) leaves the row unlabelled for the task (sample weight 0);
      an empty cell (`""`, or only delimiters and spaces) is a labelled row
      without any label (all zeros, weight 1). Unless `classes` is declared,
      `fit` takes the labels found in the training split, ordered by the
      number of rows that carry them (most frequent first), ties by name.
      A label outside the classes (a declared list, or the training split's
      labels for a held-out split) is an error that lists it.

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
    to get it for more. A task's `metrics` holds the expanded names; with
    labels from a delimited column and no declared `classes`, the per-label
    names are known, and `metrics` expanded, only after `fit`.

    Args:
        delimiter: str or None, default None. The separator of the labels in
            the single `target` column (`"|"`, `";"`, `","`); None for 0/1
            target columns. Every other argument is `kmtl.Task`'s.

    Output shape:
        `(batch, len(classes))`: one probability per label.

    Raises:
        ConfigError: a single target column without `delimiter`, a
            `delimiter` with a list of target columns, a delimiter that is not
            a non-empty string, or (with a delimiter) declared classes that
            are not distinct label strings.
        DataError: (`fit`, `encode`) a cell of a delimited column that is not
            a string, a label outside the classes, or a training split
            without any label.

    Examples:
        >>> task = Task("tags", "multilabel", target=["sports", "news"])
        >>> task.units, task.metrics
        (2, ['auc', 'auc_micro', 'auc_sports', 'auc_news'])
        >>> frame = pd.DataFrame({"tags": ["news|sports", "news", "", None]})
        >>> tags = Task("tags", "multilabel", target="tags", delimiter="|")
        >>> tags.fit(frame).classes
        ['news', 'sports']
        >>> tags.encode(frame)
        (array([[1., 1.], [1., 0.], [0., 0.], [0., 0.]], dtype=float32),
         array([1., 1., 1., 0.], dtype=float32))
    """

    default_loss = "BinaryCrossentropy"
    activation = "sigmoid"
    column_metrics = {
        "auc": lambda name: keras.metrics.AUC(name=name),
        "accuracy": lambda name: keras.metrics.BinaryAccuracy(name=name),
    }
    column_kind = "label"
    weighs_classes = True
    focal_loss = staticmethod(binary_focal_loss)

    def __init__(self, *args, delimiter=None, **kwargs):
        self.delimiter = delimiter
        # `metrics` as given (None: the defaults). Without declared classes a
        # delimited column's labels, so the per-label names, come from `fit`.
        self._given_metrics = inspect.signature(Task.__init__).bind_partial(
            self, *args, **kwargs).arguments.get("metrics")
        super().__init__(*args, **kwargs)

    @property
    def default_metrics(self):
        """`("auc", "auc_micro")`, and `"auc_per_label"` for 2 to
        `PER_COLUMN_DEFAULT_LIMIT` labels."""
        return ("auc", "auc_micro") + self._per_column_defaults(["auc_per_label"])

    def check_target(self):
        if self.delimiter is None:
            if isinstance(self.target, str):
                raise ConfigError(
                    f"Task '{self.name}': a multilabel task needs a list of 0/1 "
                    f"target columns, or one column of delimited labels with "
                    f"`delimiter`. Received: target={self.target!r}. Give "
                    f"target=[<column>, ...], or delimiter='|' (the separator "
                    f"of the labels in column {self.target!r})."
                )
            if self.classes is None:
                self.classes = list(self.target_columns)
            return
        if not isinstance(self.delimiter, str) or not self.delimiter:
            raise ConfigError(
                f"Task '{self.name}': `delimiter` must be a non-empty string "
                f"such as '|'. Received: delimiter={self.delimiter!r}"
            )
        if not isinstance(self.target, str):
            raise ConfigError(
                f"Task '{self.name}': `delimiter` splits the labels of one target "
                f"column, so `target` must be a column name. Received: "
                f"target={self.target!r}. Give one column, or remove "
                f"`delimiter` for 0/1 target columns."
            )
        if self.classes is not None:
            self._check_classes()

    def _check_classes(self):
        """Declared classes of a delimited column: distinct strings a split
        cell can give (stripped, without the delimiter)."""
        classes = self.classes
        bad = [c for c in classes if not isinstance(c, str) or not c
               or c != c.strip() or self.delimiter in c]
        duplicates = sorted({c for c in classes if classes.count(c) > 1}, key=str)
        if bad or duplicates or not classes:
            problem = (f"{bad[0]!r} cannot be a label" if bad else
                       f"{duplicates[0]!r} is listed twice" if duplicates else
                       "the list is empty")
            raise ConfigError(
                f"Task '{self.name}': `classes` must list distinct, non-empty "
                f"label strings without surrounding spaces or the delimiter "
                f"{self.delimiter!r}; {problem}. Received: classes={classes!r}"
            )

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
        """The label names (`classes`); none while they are unknown."""
        return self.classes if self.classes is not None else []

    @property
    def units(self):
        return self._class_count()

    def _expand_metrics(self, metrics):
        """Expands `metrics`; while the labels are unknown (a delimited column
        before `fit`) it only checks them and keeps the names as given."""
        if self.classes is not None:
            return super()._expand_metrics(metrics)
        known = set(self.metric_factories()) | set(self.metric_groups())
        per_label = tuple(f"{metric}_" for metric in self.column_metrics)
        for metric in metrics:
            if metric not in known and not str(metric).startswith(per_label):
                super()._expand_metrics([metric])
        return list(dict.fromkeys(metrics))

    # === Labels ===

    def fit_labels(self, values):
        """With a delimited column: the classes, when not declared, and the
        metrics they name; a declared list must hold every label.

        Raises:
            DataError: a cell that is not a string, a label outside declared
                classes, or no label at all.
        """
        if self.delimiter is None:
            return
        pairs = self._split(values.iloc[:, 0])
        if self.classes is not None:
            self._check_known(pairs["label"], "the training data")
            return
        if pairs.empty:
            raise DataError(
                f"Task '{self.name}': no label found in column '{self.target}' of "
                f"the training data after splitting on {self.delimiter!r}: every "
                f"labelled cell is empty. Check the column and `delimiter`."
            )
        rows = pairs["label"].value_counts()
        self.classes = sorted(rows.index, key=lambda label: (-rows[label], label))
        given = self._given_metrics
        self.metrics = self._expand_metrics(
            self.default_metrics if given is None else given)

    def encode_labels(self, values, labelled):
        """float32 `(rows, labels)` of 0/1.

        Raises:
            DataError: a 0/1 column holding another value; a delimited cell
                that is not a string, or holds a label outside the classes.
        """
        labels = np.zeros((len(labelled), self.units), dtype="float32")
        if self.delimiter is not None:
            pairs = self._split(values.iloc[:, 0])
            self._check_known(pairs["label"], "the data")
            rows = np.zeros((len(values), self.units), dtype="float32")
            index = pd.Index(self.classes).get_indexer(pairs["label"])
            rows[pairs["row"].to_numpy(), index] = 1.0
            labels[labelled] = rows
            return labels
        labels[labelled] = self._numeric_labels(values)
        bad = ~np.isin(labels[labelled], (0.0, 1.0))
        if bad.any():
            raise DataError(
                f"Task '{self.name}': multilabel columns must hold 0/1; "
                f"found {labels[labelled][bad][0]!r}. Fix the data."
            )
        return labels

    def _split(self, column):
        """The labels of a delimited column's non-missing cells.

        Returns:
            DataFrame with `row` (the cell's position in `column`) and `label`,
            one line per distinct label of a cell.

        Raises:
            DataError: a cell that is not a string.
        """
        cells = pd.Series(column.to_numpy(dtype=object))
        text = cells.map(lambda cell: isinstance(cell, str))
        if not text.all():
            bad = cells[~text].iloc[0]
            raise DataError(
                f"Task '{self.name}': column '{self.target}' holds labels "
                f"separated by {self.delimiter!r}, so its cells must be strings; "
                f"found {bad!r} ({type(bad).__name__}). Read the column as text "
                f"(`data.read_options: {{dtype: {{{self.target}: str}}}}`, "
                f"pandas `dtype={{{self.target!r}: str}}`) or fix the data."
            )
        labels = cells.str.split(self.delimiter, regex=False).explode().str.strip()
        labels = labels[labels != ""]
        pairs = pd.DataFrame({"row": labels.index.to_numpy(dtype="int64"),
                              "label": labels.to_numpy(dtype=object)})
        return pairs.drop_duplicates(ignore_index=True)

    def _check_known(self, labels, where):
        """Raises DataError listing up to `SHOWN_LABELS` of `labels` that are
        not classes."""
        unknown = pd.unique(labels[~labels.isin(self.classes)])
        if not len(unknown):
            return
        shown = ", ".join(repr(label) for label in unknown[:SHOWN_LABELS])
        more = (f" and {len(unknown) - SHOWN_LABELS} more"
                if len(unknown) > SHOWN_LABELS else "")
        raise DataError(
            f"Task '{self.name}': column '{self.target}' in {where} has "
            f"{len(unknown)} label(s) outside the task's {len(self.classes)} "
            f"classes: {shown}{more}. Add them to `classes` (without it the "
            f"classes are the training split's labels; a declared list may "
            f"name labels the training split lacks), or fix the data."
        )

    # === Class weights ===

    def check_class_weight(self, class_weight):
        """A mapping `{label: weight}` (of the label's positives) or `{label:
        {"positive": w, "negative": w}}` (a missing side weighs 1), each
        weight a finite number > 0; with known labels, every key a label."""
        if not isinstance(class_weight, dict) or not class_weight:
            raise ConfigError(
                f"Task '{self.name}': class_weight must be 'balanced' or a "
                f"mapping {{label: weight}} or {{label: {{positive: w, negative: "
                f"w}}}}. Received: class_weight={class_weight!r}")
        for key, weight in class_weight.items():
            if self.classes is not None and key not in self.classes:
                raise ConfigError(
                    f"Task '{self.name}': class_weight key {key!r} is not one of "
                    f"the labels {self.classes}. Received: "
                    f"class_weight={class_weight!r}")
            if isinstance(weight, dict):
                sides = set(weight) - {"positive", "negative"}
                if sides or not weight:
                    raise ConfigError(
                        f"Task '{self.name}': the weights of label {key!r} in "
                        f"class_weight are {{positive: w, negative: w}}. "
                        f"Received: class_weight={class_weight!r}")
                for side in weight.values():
                    check_weight(self, side)
            else:
                check_weight(self, weight)

    def fit_class_weight(self, values):
        """`{label: {"positive": w, "negative": w}}` for every label.
        `"balanced"`: `n / (2 n_c)` per label, n the labelled rows.

        Raises:
            DataError: a key that is no label, a label without a weight, or
                `"balanced"` with a label that is never (or always) on.
        """
        labels = self.encode_labels(values, np.ones(len(values), dtype=bool))
        mapping = self.class_weight
        if mapping == "balanced":
            fitted = {}
            for j, label in enumerate(self.classes):
                on = labels[:, j].astype(int)
                if on.min() == on.max():
                    raise DataError(
                        f"Task '{self.name}': class_weight='balanced' needs "
                        f"both classes of each label, but label {label!r} is "
                        f"{on[0]} on every labelled training row. Give the "
                        f"weights as a mapping, or drop the label.")
                negative, positive = compute_class_weight(
                    "balanced", classes=np.array([0, 1]), y=on)
                fitted[label] = {"positive": float(positive),
                                 "negative": float(negative)}
            return fitted
        unknown = [k for k in mapping if k not in self.classes]
        missing = [c for c in self.classes if c not in mapping]
        if unknown or missing:
            problem = (f"key {unknown[0]!r} is not one of the labels"
                       if unknown else f"label {missing[0]!r} has no weight")
            raise DataError(
                f"Task '{self.name}': class_weight {problem} "
                f"{self.classes}. Received: class_weight={mapping!r}. Give "
                f"one weight per label.")
        fitted = {}
        for label in self.classes:
            weight = mapping[label]
            if not isinstance(weight, dict):
                weight = {"positive": weight}
            fitted[label] = {"positive": float(weight.get("positive", 1.0)),
                             "negative": float(weight.get("negative", 1.0))}
        return fitted

    def class_weight_table(self):
        """`[[negative, positive], ...]`, one pair per label."""
        fitted = self.fitted_class_weight
        return [[fitted[c]["negative"], fitted[c]["positive"]]
                for c in self.classes], False

    def decode(self, predictions):
        """One column `<name>_<label>` per label."""
        predictions = np.asarray(predictions)
        return {f"{self.name}_{c}": predictions[:, i]
                for i, c in enumerate(self.classes)}

    # === Config ===

    def get_config(self):
        config = {**super().get_config(), "delimiter": self.delimiter}
        if self.classes is None:
            # Not fitted: the metrics as given, expanded by `fit`.
            given = self._given_metrics
            config["metrics"] = None if given is None else list(given)
        return config
