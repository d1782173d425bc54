"""Tasks: what a multi-task model predicts, how its labels are encoded and scored.

A `Task` is a small object that owns its target column(s), its label encoding, its
loss, its metrics and its head, in the spirit of TensorFlow Recommenders' tasks;
the multi-task model combines the task losses. Missing labels are never dropped or
filled: they become a sample weight of 0 for that task (see `Task.encode`).

Each task type is a subclass registered in `TASK_TYPES` under its name
(`BinaryTask` is `"binary"`, ...), one file each; `Task("sex", "binary")` returns
a `BinaryTask`. `Task` states the contract a type fills in (see "The contract"
below); a new type is one file and its `@register("name")`.

A binary task may be *derived* from other binary tasks (`derived_from`, see
`kmtl.tasks.derived`): its prediction is the product of theirs, as ESMM's
CTCVR = CTR x CVR. A task may also have no target column at all (`target=[]`):
an output that only ever learns through a task derived from it.
"""

import math

import keras
import numpy as np
import pandas as pd

from kmtl._checks import non_finite
from kmtl._keras_internals import LossFunctionWrapper
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.registry import Registry
from kmtl.registry import options_of
from kmtl.tasks.derived import check_derived_from
from kmtl.tasks.losses import ClassWeightedLoss
from kmtl.tasks.metrics import ColumnMetric
from kmtl.tasks.metrics import column_metric_names

# The reduction every task loss uses: the mean over the labelled rows of a batch.
# Keras divides with `divide_no_nan`, so a batch without labels for a task adds 0.
LOSS_REDUCTION = "mean_with_sample_weight"
"""The Keras loss reduction of every task loss: the mean over the labelled rows
of a batch (0 for a batch without labels)."""

CONSOLIDATION_COLUMNS = ("label_issue", "label_quality", "pseudo", "suggested")
"""The kinds of per-task column `kmtl consolidate` adds to a table,
`<task>__<kind>` (`Task.consolidation_column`): whether the given label was
flagged as a likely error, its label-quality score, whether the task's label
is the model's (a pseudo-label or a relabel, weighed by
`pseudo_label_weight`), and the model's out-of-fold label."""

FOLD_COLUMN = "kmtl__fold"
"""The column of a consolidated table holding each row's cross-fitting fold:
the row's predictions come from the model that did not train on that fold."""

PER_COLUMN_DEFAULT_LIMIT = 10
"""The most columns (labels of a multilabel task, target columns of a
regression) for which a task logs per-column metrics by default; above it they
are opt-in (`metrics=[..., "auc_per_label"]`)."""


class Task:
    """One prediction target of a multi-task model (the base of every task type).

    Args:
        name: str. The task's name: the key of its model output, its label and its
            sample weight, and the prefix of its logs (`<name>_loss`, `<name>_auc`).
        type: str. A registered task type (`kmtl.tasks.list_task_types()`):
            `"binary"`, `"multiclass"`, `"multilabel"`, `"regression"`.
            `Task(name, type, ...)` returns an instance of that type's class.
        target: str or list of str. The label column(s). Defaults to `name`.
            Multilabel tasks take one 0/1 column per label, or one column of
            delimited labels with `delimiter` (`MultilabelTask`); regression
            tasks may take several columns (one output unit each). An empty list `[]`
            declares a binary task without labels: an output that learns only
            through the tasks derived from it (ESMM's CVR), with sample weight 0
            on every row, so it adds 0 to every loss and gets weight 0 from every
            weighting method.
        positive: The label value that counts as positive for a binary task. Every
            other non-missing value is negative. Defaults to 1 (or True) when the
            labels are 0/1 or boolean; string labels need it.
        classes: list. The class values of a multiclass task, in output order.
            Inferred (sorted) from the training labels when not given; a label
            outside a declared list is an error. Multilabel: the label names
            (default: the target columns, or the labels found in a delimited
            column).
        loss: A Keras loss identifier (string, config dict or `keras.losses.Loss`),
            or the focal loss: `"focal"` (gamma 2, no alpha) or `{"name":
            "focal", "gamma": 2.0, "alpha": 0.25}` (binary, multiclass and
            multilabel tasks; see `focal_loss`). Defaults by type
            (`default_loss`): binary and multilabel cross-entropy, sparse
            categorical cross-entropy, mean squared error. It is always
            reduced as the mean over the labelled rows
            (`reduction="mean_with_sample_weight"`).
        loss_weight: float. The task's static loss weight; default 1.0, or 0.0
            for a task without target (its loss is always 0).
        metrics: list of str. Metric names of the type (`metric_factories()`;
            binary: auc, accuracy, precision, recall, crossentropy; multiclass:
            accuracy, top_k_accuracy, crossentropy; multilabel: auc (macro),
            auc_macro, auc_micro, accuracy; regression: mae, rmse, mse), their
            per-column forms (multilabel `auc_<label>`, `accuracy_<label>`;
            regression `mae_<target>`, `rmse_<target>`, `mse_<target>`), and
            groups that expand into one per column (`auc_per_label`,
            `mae_per_target`; `metric_groups()`). The task keeps the expanded
            names, each once, in order. Defaults (`default_metrics`): binary
            auc + accuracy; multiclass accuracy; multilabel auc + auc_micro +
            auc_per_label; regression mae + rmse, + mae_per_target +
            rmse_per_target with several targets. Per-column metrics are in
            the defaults only for 2 to `PER_COLUMN_DEFAULT_LIMIT` (10) columns.
        target_mean: float or list of float (regression only). The training
            labels' mean, one per target column. The model's regression head
            outputs label units (`z * std + mean`) and the loss is taken on
            standardized values, so a target in grams does not swamp a
            cross-entropy. Filled in by `fit` when not given.
        target_std: float or list of float (regression only). The training
            labels' standard deviation, one per target column; filled in by
            `fit` when not given.
        derived_from: list of str or None. Binary tasks whose predicted
            probabilities, multiplied, are this binary task's prediction: it has
            no tower or head of its own, but its own label, loss, metrics and
            model output. Ma et al., "Entire Space Multi-Task Model: An Effective
            Approach for Estimating Post-Click Conversion Rate", SIGIR 2018
            (arXiv:1804.07931): `pCTCVR = pCTR x pCVR`. `derivation_order` checks
            the names against the other tasks.
        class_weight: None, `"balanced"` or a mapping (binary, multiclass and
            multilabel tasks). Weights of the loss by the label's class, so
            the task loss is the class-weighted mean over the labelled rows
            (`kmtl.tasks.losses.ClassWeightedLoss`); metrics stay unweighted.
            A mapping is keyed by the label values as they appear in the
            target column: binary `{label: weight}` for the positive value
            and the other label(s) (or `{"positive": w, "negative": w}`);
            multiclass `{class: weight}` for each class (or a list in
            `classes` order); multilabel `{label: weight}` (the weight of its
            positives; negatives 1) or `{label: {"positive": w, "negative":
            w}}`. `"balanced"` is scikit-learn's rule `n / (k * n_c)` on the
            training labels (`compute_class_weight`; multilabel: per label,
            positives and negatives, k = 2), computed by `fit`.
        fitted_class_weight: The class weights `fit` resolved (binary
            `{"positive": w, "negative": w}`, multiclass one weight per class
            in `classes` order, multilabel `{label: {"positive": w,
            "negative": w}}`); filled in by `fit` and kept in the config, so
            a saved model keeps its balanced weights. A given value is kept
            by `fit` for `"balanced"`.
        pseudo_label_weight: float in [0, 1], default 1.0. The sample weight
            of a row whose label for this task is the model's, not a
            person's: a row where the column `<task>__pseudo` (written by
            `kmtl consolidate`, see `CONSOLIDATION_COLUMNS`) is true. 0
            leaves such labels out; 1 counts them as given labels.

    Raises:
        ConfigError: for an unknown type, metric or a bad weight; a task without
            target that is not binary; `derived_from` on a non-binary task, with
            fewer than two distinct names, or naming the task itself; a
            `class_weight` or focal loss on a task type without classes
            (regression) or without target, a weight that is not a finite
            number > 0, a focal `alpha` outside [0, 1] or `gamma` < 0.

    Examples:
        >>> task = Task("income", "binary", target="income_50k", positive="50000+.")
        >>> type(task).__name__, task.units
        ('BinaryTask', 1)
        >>> esmm = [Task("ctr", "binary", target="click"),
        ...         Task("cvr", "binary", target=[]),
        ...         Task("ctcvr", "binary", target="purchase",
        ...              derived_from=["ctr", "cvr"])]
        >>> [t.name for t in kmtl.tasks.derivation_order(esmm)]
        ['ctr', 'cvr', 'ctcvr']
    """

    # === The contract: what a task type sets or overrides ===

    #: The Keras loss class name a task of this type uses by default.
    default_loss = None
    #: Metric names (and per-column groups, `auc_per_label`) used when
    #: `metrics` is not given; a type whose defaults depend on its target
    #: makes it a property.
    default_metrics = ()
    #: Metrics the type also computes per column of its output:
    #: `{metric: constructor(name) -> keras.metrics.Metric}`, the constructor
    #: of the metric of one column `(batch, 1)`. Each gives one metric
    #: `<metric>_<column>` per column (`metric_columns`, see `ColumnMetric`)
    #: and a group `<metric>_per_<column_kind>` that expands into them.
    column_metrics = {}
    #: What a column is called in the group names (`auc_per_label`).
    column_kind = "column"
    #: The head's output activation (None: linear).
    activation = None
    #: A task of this type may be derived (`derived_from`) and derived from: its
    #: prediction is a probability.
    derivable = False
    #: A task of this type may be declared without target column (`target=[]`).
    allows_no_target = False
    #: A task of this type takes `class_weight` (its labels are classes).
    weighs_classes = False
    #: `(alpha, gamma) -> keras.losses.Loss`: the type's focal loss (Lin et
    #: al., ICCV 2017), alpha None for no class balancing; None: the type has
    #: no focal loss.
    focal_loss = None

    def check_target(self):
        """Checks (and completes) the declared target and classes; a type that
        needs a particular target overrides it.

        Raises:
            ConfigError: the target does not fit the type.
        """

    def metric_factories(self):
        """`{short name: constructor(name) -> keras.metrics.Metric}`: the metrics
        of the whole output a task of this type can log (the per-column ones
        come from `column_metrics`; `all_metric_factories` has both). Called
        before `fit`, so a factory reads anything fitted (`units`) only when
        called."""
        raise NotImplementedError

    def metric_columns(self):
        """The names per-column metrics are named after, one per output unit
        in output order. Default: the target columns."""
        return self.target_columns

    @property
    def units(self):
        """Output units of the task's head: `(batch, units)`."""
        raise NotImplementedError

    def fit_labels(self, values):
        """Fills what the type learns from the training labels (classes, the
        positive value, the target scale). `values`: the labelled rows of the
        target columns, a DataFrame. Default: nothing to learn."""

    def encode_labels(self, values, labelled):
        """The labels of every row, placeholder 0 where `labelled` is False.

        Args:
            values: DataFrame, the labelled rows of the target columns.
            labelled: `(rows,)` bool.

        Returns:
            float32 `(rows, units)`, or int32 `(rows,)` class indices.
        """
        raise NotImplementedError

    def decode(self, predictions):
        """Turns one task's predictions into DataFrame columns.

        Args:
            predictions: `(rows, units)` array, the model's output for the
                task.

        Returns:
            dict `{column name: (rows,) array}`.
        """
        raise NotImplementedError

    def standardize(self, values):
        """Maps labels or predictions to the scale the loss is taken on.
        Default: unchanged."""
        return values

    def strata(self, frame):
        """`(rows,)` strings the `stratified` split balances on (the label of a
        labelled row), or None when the type does not stratify by label."""
        return None

    def check_class_weight(self, class_weight):
        """Checks the form of a `class_weight` mapping (or a
        `fitted_class_weight`) before the labels are known (types with
        `weighs_classes`).

        Raises:
            ConfigError: naming the task, the key, the value and the fix.
        """

    def fit_class_weight(self, values):
        """The fitted class weights (the type's form of `fitted_class_weight`)
        of `class_weight` on the training labels `values` (a DataFrame of the
        labelled rows of the target columns; `fit_labels` has run).

        Raises:
            DataError: a mapping key that is no label, a training label
                without a weight, or `"balanced"` without both classes.
        """
        raise NotImplementedError

    def class_weight_table(self):
        """`(class_weights, sparse)` of `kmtl.tasks.losses.ClassWeightedLoss`
        from `fitted_class_weight`."""
        raise NotImplementedError

    def build_head(self, x):
        """Puts the task's head on its tower output.

        Args:
            x: `(batch, d)` tensor, the task tower's output.

        Returns:
            The head's output, `(batch, units)` float32.

        Default: `Dense(units, activation)` in float32, named after the task,
        so the model output is `(batch, units)` and keeps the layer name of
        saved models.
        """
        return keras.layers.Dense(self.units, activation=self.activation,
                                  dtype="float32", name=self.name)(x)

    # === Construction ===

    def __new__(cls, name=None, type=None, *args, **kwargs):
        if cls is Task:
            _check_name(name)
            if type not in TASK_TYPES.list():
                raise ConfigError(
                    f"Task '{name}': unknown type {type!r}. Use one of "
                    f"{tuple(list_task_types())}."
                )
            cls = TASK_TYPES.get_class(type)
        return super().__new__(cls)

    def __init__(
        self,
        name,
        type=None,
        target=None,
        positive=None,
        classes=None,
        loss=None,
        loss_weight=None,
        metrics=None,
        target_mean=None,
        target_std=None,
        derived_from=None,
        class_weight=None,
        fitted_class_weight=None,
        pseudo_label_weight=1.0,
    ):
        _check_name(name)
        _check_arguments(name, target, positive, classes, metrics, target_mean,
                         target_std)
        own = self.type
        if type is not None and type != own:
            raise ConfigError(
                f"Task '{name}': a {self.__class__.__name__} has type {own!r}. "
                f"Received: type={type!r}"
            )
        self.name = name
        self.target = target if target is not None else name
        if isinstance(self.target, tuple):
            self.target = list(self.target)
        if self.target == [] and not self.allows_no_target:
            allowed = " or ".join(self.types_where("allows_no_target"))
            raise ConfigError(
                f"Task '{name}': only a {allowed} task may have no target column "
                f"(target=[]): its probability feeds the tasks derived from it. "
                f"Give a target for this {own} task."
            )
        self.positive = positive
        self.classes = list(classes) if classes is not None else None
        self.check_target()
        self.loss = loss if loss is not None else self.default_loss
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
            metrics = self.default_metrics if self.has_labels else ()
        self.metrics = self._expand_metrics(metrics)
        self.target_mean = target_mean
        self.target_std = target_std
        self.derived_from = check_derived_from(self, derived_from)
        self._focal = self._focal_options(self.loss)
        self.class_weight = class_weight
        self.fitted_class_weight = fitted_class_weight
        self._check_class_weights()
        if not (_is_number(pseudo_label_weight) and 0 <= pseudo_label_weight <= 1):
            raise ConfigError(
                f"Task '{name}': pseudo_label_weight must be a number in [0, 1] "
                f"(the sample weight of a pseudo-label). Received: "
                f"pseudo_label_weight={pseudo_label_weight!r}")
        self.pseudo_label_weight = float(pseudo_label_weight)

    @property
    def type(self):
        """The registered name of the task's type (`"binary"`, ...)."""
        return self.registered_name

    @staticmethod
    def types_where(attribute):
        """The registered task types whose class sets `attribute` true, e.g.
        `Task.types_where("derivable")` -> `["binary"]`."""
        return [name for name in TASK_TYPES.names()
                if getattr(TASK_TYPES.get_class(name), attribute)]

    # === Shapes ===

    @property
    def target_columns(self):
        """The label columns, as a list."""
        return [self.target] if isinstance(self.target, str) else list(self.target)

    def consolidation_column(self, kind):
        """The name of the task's consolidation column of `kind` (one of
        `CONSOLIDATION_COLUMNS`): `<task>__<kind>`."""
        if kind not in CONSOLIDATION_COLUMNS:
            raise ValueError(f"kind must be one of {CONSOLIDATION_COLUMNS}. "
                             f"Received: {kind!r}")
        return f"{self.name}__{kind}"

    def pseudo_labelled(self, frame):
        """`(rows,)` bool: the rows whose label for this task is the model's,
        where the column `<task>__pseudo` is true (all False without it)."""
        column = self.consolidation_column("pseudo")
        if column not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        return frame[column].fillna(False).astype(bool).to_numpy()

    @property
    def has_labels(self):
        """False for a task declared without target column (`target=[]`)."""
        return bool(self.target_columns)

    def _class_count(self):
        if self.classes is None:
            raise ConfigError(
                f"Task '{self.name}': classes are unknown; call fit() on training "
                f"data or declare classes."
            )
        return len(self.classes)

    # === Loss and metrics ===

    def build_loss(self):
        """A fresh `keras.losses.Loss` reduced over labelled rows only: the
        task's loss, or its focal loss, wrapped in a `ClassWeightedLoss` when
        the task has class weights.

        Raises:
            ConfigError: an unknown loss, or class weights not yet fitted
                (`fit` the task first).
        """
        if self._focal is not None:
            obj = self.focal_loss(self._focal["alpha"], self._focal["gamma"])
            config = {**obj.get_config(), "reduction": LOSS_REDUCTION}
            return self._class_weighted(obj.__class__.from_config(config))
        loss = self.loss
        defaults = {TASK_TYPES.get_class(n).default_loss for n in TASK_TYPES.names()}
        if isinstance(loss, str) and loss in defaults:
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
            return self._class_weighted(obj.__class__.from_config(config))
        return self._class_weighted(LossFunctionWrapper(
            obj, reduction=LOSS_REDUCTION, name=getattr(obj, "__name__", None)
        ))

    def _class_weighted(self, loss):
        """`loss`, wrapped in a `ClassWeightedLoss` when the task has class
        weights."""
        if self.class_weight is None:
            return loss
        if self.fitted_class_weight is None:
            raise ConfigError(
                f"Task '{self.name}': class_weight={_plain(self.class_weight)!r} "
                f"is resolved on the training labels by `fit`; call "
                f"task.fit(<training frame>) before building the model.")
        table, sparse = self.class_weight_table()
        return ClassWeightedLoss(loss, table, sparse=sparse,
                                 reduction=LOSS_REDUCTION,
                                 name=f"{self.name}_class_weighted_loss")

    def _focal_options(self, loss):
        """`{"alpha", "gamma"}` of a focal `loss` (`"focal"` or `{"name":
        "focal", ...}`), or None for another loss.

        Raises:
            ConfigError: a type without focal loss, an unknown key, `alpha`
                outside [0, 1] (or not None), `gamma` < 0.
        """
        if loss == "focal":
            options = {"name": "focal"}
        elif isinstance(loss, dict) and loss.get("name") == "focal" and (
                "class_name" not in loss):
            options = dict(loss)
        else:
            return None
        if self.focal_loss is None:
            focal = ", ".join(self.types_where("focal_loss"))
            raise ConfigError(
                f"Task '{self.name}': loss={loss!r}: the focal loss is for "
                f"{focal} tasks, not {self.type} ones. Use a {self.type} loss "
                f"such as {self.default_loss!r}.")
        unknown = sorted(set(options) - {"name", "alpha", "gamma"})
        if unknown:
            raise ConfigError(
                f"Task '{self.name}': unknown key(s) {unknown} in the focal loss "
                f"{loss!r}. Allowed keys: ['alpha', 'gamma', 'name'].")
        alpha, gamma = options.get("alpha"), options.get("gamma", 2.0)
        if alpha is not None and not (_is_number(alpha) and 0 <= alpha <= 1):
            raise ConfigError(
                f"Task '{self.name}': the focal loss's alpha must be a number in "
                f"[0, 1] (the weight of the positive class, 0.25 in Lin et al.) "
                f"or absent. Received: loss.alpha={alpha!r}")
        if not (_is_number(gamma) and 0 <= gamma < math.inf):
            raise ConfigError(
                f"Task '{self.name}': the focal loss's gamma must be a finite "
                f"number >= 0 (2.0 in Lin et al.; 0 is the cross-entropy). "
                f"Received: loss.gamma={gamma!r}")
        return {"alpha": None if alpha is None else float(alpha),
                "gamma": float(gamma)}

    def _check_class_weights(self):
        """Checks `class_weight` and `fitted_class_weight` at construction.

        Raises:
            ConfigError: naming the task, the key and the value.
        """
        given = self.class_weight
        if given is None:
            if self.fitted_class_weight is not None:
                raise ConfigError(
                    f"Task '{self.name}': fitted_class_weight is set by `fit` "
                    f"from class_weight, which is not given. Set class_weight "
                    f"or remove fitted_class_weight.")
            return
        if not self.weighs_classes or not self.has_labels:
            which = ("a task without target" if self.weighs_classes
                     else f"a {self.type} task")
            types = ", ".join(self.types_where("weighs_classes"))
            raise ConfigError(
                f"Task '{self.name}': class_weight is for {types} tasks with "
                f"labels, not {which}. Remove class_weight. Received: "
                f"class_weight={_plain(given)!r}")
        if isinstance(given, str):
            if given != "balanced":
                raise ConfigError(
                    f"Task '{self.name}': class_weight must be 'balanced' or a "
                    f"mapping {{label: weight}}. Received: class_weight={given!r}")
        else:
            self.check_class_weight(given)
        if self.fitted_class_weight is not None:
            self.check_class_weight(self.fitted_class_weight)

    def all_metric_factories(self):
        """`{short name: constructor(name) -> keras.metrics.Metric}`: the
        type's `metric_factories()`, and for each metric of `column_metrics`
        one `ColumnMetric` per column of `metric_columns()`, named
        `<metric>_<column>` (`kmtl.tasks.metrics.column_metric_names`)."""
        return self._metrics_by_name()[0]

    def metric_groups(self):
        """`{group: [metric, ...]}`: the names that expand into one metric per
        column, `<metric>_per_<column_kind>` (`auc_per_label`,
        `mae_per_target`) for each metric of `column_metrics`."""
        return self._metrics_by_name()[1]

    def _metrics_by_name(self):
        factories = dict(self.metric_factories())
        groups = {f"{metric}_per_{self.column_kind}": [] for metric
                  in self.column_metrics}
        taken = set(factories) | set(groups)
        columns = self.metric_columns()
        for metric, make in self.column_metrics.items():
            names = column_metric_names(metric, columns, taken)
            taken.update(names)
            groups[f"{metric}_per_{self.column_kind}"] = names
            for index, name in enumerate(names):
                factories[name] = _column_factory(make, index)
        return factories, groups

    def _expand_metrics(self, metrics):
        """The metric names of `metrics`, groups expanded, each name once.

        Raises:
            ConfigError: a name that is neither a metric nor a group.
        """
        factories, groups = self._metrics_by_name()
        names = []
        for metric in metrics:
            if metric in groups:
                names.extend(groups[metric])
            elif metric in factories:
                names.append(metric)
            else:
                choices = sorted(self.metric_factories()) + sorted(groups)
                examples = [n for group in groups.values() for n in group][:1]
                per_column = (f", or one {self.column_kind}'s metric such as "
                              f"{examples[0]!r}" if examples else "")
                raise ConfigError(
                    f"Task '{self.name}': unknown metric {metric!r} for a "
                    f"{self.type} task. Use any of {choices}{per_column}."
                )
        return list(dict.fromkeys(names))

    def _per_column_defaults(self, groups):
        """`groups` when the task has 2 to `PER_COLUMN_DEFAULT_LIMIT` columns
        (one column: its per-column metric is the whole metric), else ()."""
        count = len(self.metric_columns())
        return tuple(groups) if 2 <= count <= PER_COLUMN_DEFAULT_LIMIT else ()

    def build_metrics(self):
        """Fresh metric objects named `<task>_<metric>`, one per name in
        `metrics`."""
        factories = self.all_metric_factories()
        return [factories[m](f"{self.name}_{m}") for m in self.metrics]

    # === Labels ===

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
            DataError: a target column is absent, the task has no labels, or the
                labels do not fit the type (binary string labels without
                `positive`, text in a regression target, ...).
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
        self.fit_labels(values)
        if self.class_weight is not None and not (
                self.class_weight == "balanced"
                and self.fitted_class_weight is not None):
            self.fitted_class_weight = self.fit_class_weight(values)
        return self

    def encode(self, frame):
        """Encodes the labels of `frame` for training.

        Returns:
            `(labels, sample_weight)`: labels as float32 `(rows, units)` (binary,
            multilabel, regression) or int32 `(rows,)` class indices (multiclass);
            sample_weight float32 `(rows,)`, 1 where the row is labelled and 0 where
            it is not (0 everywhere for a task without target), and
            `pseudo_label_weight` where the column `<task>__pseudo` is true.
            Unlabelled rows carry a placeholder label of 0 that the 0 weight
            removes from losses and metrics.

        Raises:
            DataError: a target column is absent or a label does not fit the type
                (not a declared class, not a number, not 0/1).
        """
        self.check_columns(frame)
        labelled = self.labelled(frame)
        weight = labelled.astype("float32")
        if not self.has_labels:
            return np.zeros((len(frame), self.units), dtype="float32"), weight
        weight[self.pseudo_labelled(frame)] *= self.pseudo_label_weight
        values = frame.loc[labelled, self.target_columns]
        return self.encode_labels(values, labelled), weight

    def _numeric_labels(self, values):
        """The labelled rows as float64 `(labelled, columns)`.

        Raises:
            DataError: a label is not a number, or not finite in float32.
        """
        try:
            numbers = values.astype("float64").to_numpy()
        except (TypeError, ValueError):
            for column in self.target_columns:
                numbers = pd.to_numeric(values[column], errors="coerce")
                bad = values[column][numbers.isna()]
                if len(bad):
                    break
            raise DataError(
                f"Task '{self.name}': {self.type} labels in column '{column}' must "
                f"be numbers; found {bad.iloc[0]!r}. Fix the column or the task type."
            ) from None
        flagged = non_finite(numbers)
        if flagged.any():
            rows, columns = flagged.nonzero()
            column = self.target_columns[columns[0]]
            raise DataError(
                f"Task '{self.name}': {len(rows):,} label(s) in column '{column}' "
                f"are not finite float32 numbers (inf, or beyond +-3.4e38), first "
                f"in row {values.index[rows[0]]}: "
                f"{float(numbers[rows[0], columns[0]])!r}. "
                f"Clean the column, or set data.non_finite: impute (treat them as "
                f"missing labels) or drop (drop those rows).")
        return numbers

    def _label_strings(self, frame):
        """The first target column as strings, for `strata`."""
        if not self.has_labels:
            return None
        return frame[self.target_columns[0]].map(str).to_numpy(dtype=object)

    # === Config ===

    def get_config(self):
        loss = self.loss
        if isinstance(loss, keras.losses.Loss):
            loss = keras.losses.serialize(loss)
        return {
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
            "class_weight": (self.class_weight if self.class_weight == "balanced"
                             or self.fitted_class_weight is None
                             else self.fitted_class_weight),
            "fitted_class_weight": self.fitted_class_weight,
            "pseudo_label_weight": self.pseudo_label_weight,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        derived = (f", derived_from={self.derived_from!r}" if self.derived_from
                   else "")
        return (f"Task(name={self.name!r}, type={self.type!r}, "
                f"target={self.target!r}{derived})")


def consolidation_columns(tasks):
    """Every column `kmtl consolidate` may add to a table of `tasks`: each
    task's `<task>__<kind>` (`CONSOLIDATION_COLUMNS`) and `FOLD_COLUMN`. They
    describe the labels, so they are never features."""
    return [task.consolidation_column(kind) for task in tasks
            for kind in CONSOLIDATION_COLUMNS] + [FOLD_COLUMN]


def _column_factory(make, index):
    """A constructor(name) of the `ColumnMetric` of column `index` around the
    metric `make(name)`."""
    return lambda name: ColumnMetric(make(name), index, name=name)


def _check_name(name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(
            f"Task name must be a Python identifier (it names model outputs "
            f"and logs). Received: name={name!r}"
        )


LABEL_VALUES = (str, int, float, bool, np.generic)
"""The types of a label value (`positive`, an item of `classes`)."""


def _is_list_of(value, types):
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, types) for v in value)


def _is_number(value):
    """An int or float (not a bool) that is not NaN."""
    return (isinstance(value, (int, float, np.number)) and not isinstance(
        value, (bool, np.bool_)) and not math.isnan(value))


def check_weight(task, value, key="class_weight"):
    """Raises ConfigError unless `value` is a finite number > 0.

    Args:
        task: the `Task`, named in the message.
        value: the weight.
        key: str, the key named in the message.
    """
    if not (_is_number(value) and 0 < value < math.inf):
        raise ConfigError(
            f"Task '{task.name}': every weight of {key} must be a finite number "
            f"> 0. Received: {key}={_plain(task.class_weight)!r} (weight "
            f"{value!r}). Fix the weight.")


def _is_statistic(value, positive):
    """A finite number (> 0 when `positive`) or a list of them."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
               and math.isfinite(v) and (v > 0 or not positive) for v in values)


def _check_arguments(name, target, positive, classes, metrics, target_mean,
                     target_std):
    """Checks the types of a task's arguments, as a config may give anything.

    Raises:
        ConfigError: naming the task, the argument and the value.
    """
    checks = (
        ("target", target, isinstance(target, str) or _is_list_of(target, str),
         "a column name or a list of column names"),
        ("positive", positive, isinstance(positive, LABEL_VALUES),
         "one label value (a string, number or boolean)"),
        ("classes", classes, _is_list_of(classes, LABEL_VALUES),
         "a list of label values (strings, numbers or booleans)"),
        ("metrics", metrics, _is_list_of(metrics, str),
         "a list of metric names, e.g. ['auc']"),
        ("target_mean", target_mean, _is_statistic(target_mean, False),
         "a finite number or a list of them"),
        ("target_std", target_std, _is_statistic(target_std, True),
         "a positive finite number or a list of them"),
    )
    for key, value, ok, what in checks:
        if value is not None and not ok:
            raise ConfigError(f"Task '{name}': {key} must be {what}. Received: "
                              f"{key}={value!r}")


def _plain(value):
    """Numpy scalars to Python ones, so configs serialize to JSON and YAML."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# === The registry ===

TASK_TYPES = Registry("task type", Task, keras_serializable=False)
"""The registry of task types (`kmtl.registry.Registry`): `"binary"`,
`"multiclass"`, `"multilabel"`, `"regression"`."""


def register(*names):
    """Class decorator registering a `Task` subclass as a task type.

    Args:
        *names: str. The type's names, lower case (the first is canonical).

    Returns:
        The decorator.

    Raises:
        TypeError: the class does not subclass `Task`.
        ValueError: no name, or a name taken by another class.

    Examples:
        >>> @kmtl.tasks.register("ordinal")
        ... class OrdinalTask(Task): ...
    """
    return TASK_TYPES.register(*names)


def list_task_types():
    """The registered task types, sorted.

    Returns:
        list of str: `["binary", "multiclass", "multilabel", "regression"]` and
        any registered since.
    """
    return TASK_TYPES.names()


def serialize(task):
    """A task as a config dict.

    Args:
        task: a `Task`.

    Returns:
        dict: `{"class_name": <type>, "config": task.get_config()}`.
    """
    return TASK_TYPES.serialize(task)


def deserialize(config):
    """The task `serialize` described.

    Args:
        config: dict, `serialize`'s output.

    Returns:
        A `Task`.

    Raises:
        ConfigError: `config` does not describe a task, or its arguments are
            refused.
    """
    return TASK_TYPES.deserialize(config)


def get(identifier):
    """Returns a `Task` from a Task, a config dict (`{"name": ..., "type": ...,
    ...}`, as in a run config) or `serialize`'s output.

    Args:
        identifier: a `Task` (returned as is), a task config dict or
            `serialize`'s output.

    Returns:
        A `Task`, an instance of its type's class.

    Raises:
        ConfigError: an unknown key, a missing `name` or `type`, or anything else.
    """
    if isinstance(identifier, Task):
        return identifier
    if isinstance(identifier, dict):
        if "class_name" in identifier and "name" not in identifier:
            return deserialize(identifier)
        # `Task`'s arguments, and those a type adds (multilabel `delimiter`).
        kind = identifier.get("type")
        cls = TASK_TYPES.get_class(kind) if kind in TASK_TYPES else Task
        allowed = set(options_of(Task)) | set(options_of(cls))
        unknown = set(identifier) - allowed
        if unknown:
            of_type = f" for a {cls.registered_name} task" if cls is not Task else ""
            raise ConfigError(
                f"Task {identifier.get('name', '?')!r}: unknown key(s) "
                f"{sorted(unknown)}{of_type}. Allowed keys: {sorted(allowed)}."
            )
        for key in ("name", "type"):
            if key not in identifier:
                raise ConfigError(
                    f"A task is missing the key '{key}': {identifier}. Every task "
                    f"needs `name` and `type` ({', '.join(list_task_types())})."
                )
        return Task.from_config(identifier)
    raise ConfigError(f"Cannot interpret a task from {identifier!r}.")
