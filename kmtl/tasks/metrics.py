"""Per-column metrics: a metric of one label of a multilabel task or one target
column of a regression task, logged beside the metric over the whole output.

`ColumnMetric` applies a Keras metric to one column of `y_true` and `y_pred`;
`column_suffix` turns a label or column name into the part of a metric name
after the metric (`auc_<suffix>`); `column_metric_names` gives one distinct
metric name per column. `Task` builds its per-column metrics with them (see
`Task.column_metrics`).
"""

import keras
from keras import ops

from kmtl.naming import ascii_name


def column_suffix(column):
    """The part of a per-column metric name that names the column.

    The rule of feature input names (`kmtl.features.input_name`) without its
    prefix: a name that is an ASCII letter followed by ASCII letters, digits
    and `_` is kept as it is. In any other, letters with accents lose
    them (`île` -> `ile`), a few letters are transliterated (`ß` -> `ss`), a
    letter of another script becomes its code point (`収` -> `u53ce`), every run
    of other characters becomes one `_`, and leading and trailing `_` are
    dropped. A metric name such as `auc_<suffix>` is then a valid TensorFlow
    name scope and TensorBoard tag.

    Args:
        column: a label or column name (str, or anything `str` takes).

    Returns:
        str: the suffix; empty when nothing of the name is kept (`"?!"`).

    Examples:
        >>> [column_suffix(c) for c in ["sports", "bill length (mm)", "Größe",
        ...                             "2nd home"]]
        ['sports', 'bill_length_mm', 'Grosse', '2nd_home']
    """
    return ascii_name(column)


def column_metric_names(metric, columns, taken=()):
    """One distinct metric name per column: `<metric>_<column_suffix(column)>`.

    A name that is already taken (by a name in `taken` or by an earlier
    column) gets the column's index appended, `_<index>`, until it is free:
    labels `"a b"` and `"a-b"` give `auc_a_b` and `auc_a_b_1`; a label named
    `micro` gives `auc_micro_<index>`, since `auc_micro` is the micro-averaged
    AUC. A column whose suffix is empty is named by its index (`auc_2`). The
    names depend only on the columns' order and names, so a saved config
    gives the same names again.

    Args:
        metric: str, the metric's short name (`"auc"`, `"mae"`).
        columns: list of column or label names, in output order.
        taken: names no column may get (the task's other metric names).

    Returns:
        list of str, one per column, none in `taken` and no two equal.
    """
    taken = set(taken)
    names = []
    for index, column in enumerate(columns):
        suffix = column_suffix(column) or str(index)
        name = f"{metric}_{suffix}"
        while name in taken:
            name = f"{name}_{index}"
        taken.add(name)
        names.append(name)
    return names


@keras.saving.register_keras_serializable(package="kmtl")
class ColumnMetric(keras.metrics.Metric):
    """A Keras metric of one column of the labels and predictions.

    Slices column `column` out of `y_true` and `y_pred` (keeping the column
    axis) and passes them, with the sample weight unchanged, to the wrapped
    metric: `ColumnMetric(keras.metrics.AUC(), 2)` is the AUC of the third
    label of a multilabel output, `ColumnMetric(keras.metrics.
    MeanAbsoluteError(), 0)` the MAE of the first target of a regression, in
    that target's units. Rows with sample weight 0 (a task's unlabelled rows)
    do not count, as for the wrapped metric.

    Args:
        metric: a `keras.metrics.Metric` instance, a Keras metric name
            (`"mae"`) or a config dict (`keras.metrics.get`). It accumulates
            the column's statistics; its state is this metric's state.
        column: int >= 0, the column's index on the last axis.
        name: str or None, the metric's name (logs show it). Default: the
            wrapped metric's name and the column, `<metric>_<column>`.
        dtype: the metric's dtype; default the wrapped metric's.

    Input shape:
        `y_true` and `y_pred`: `(batch, columns)` with `columns > column`;
        `sample_weight`: None or `(batch,)`.

    Output shape:
        `result()`: the wrapped metric's result for the column, a scalar.

    Raises:
        ValueError: `column` is not an int >= 0, `metric` is not a metric,
            or (in `update_state`) the inputs have a known last axis of
            `column` entries or fewer.

    Example:
        >>> metric = ColumnMetric(keras.metrics.MeanAbsoluteError(), 1)
        >>> metric.update_state([[0.0, 10.0], [0.0, 20.0]],
        ...                     [[5.0, 11.0], [9.0, 23.0]])
        >>> float(metric.result())  # (|11 - 10| + |23 - 20|) / 2
        2.0
    """

    def __init__(self, metric, column, name=None, dtype=None):
        if not isinstance(column, int) or isinstance(column, bool) or column < 0:
            raise ValueError(f"column must be an int >= 0 (an index on the last "
                             f"axis). Received: column={column!r}")
        metric = keras.metrics.get(metric)
        if not isinstance(metric, keras.metrics.Metric):
            raise ValueError(f"metric must be a keras.metrics.Metric, a Keras "
                             f"metric name or config. Received: metric={metric!r}")
        super().__init__(name=name or f"{metric.name}_{column}",
                         dtype=dtype or metric.dtype)
        self.metric = metric
        self.column = column

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulates the wrapped metric on column `column`.

        Args:
            y_true: `(batch, columns)` labels.
            y_pred: `(batch, columns)` predictions.
            sample_weight: None or `(batch,)` row weights.
        """
        y_true = self._column(y_true, "y_true")
        y_pred = self._column(y_pred, "y_pred")
        self.metric.update_state(y_true, y_pred, sample_weight=sample_weight)

    def _column(self, values, argument):
        values = ops.convert_to_tensor(values)
        size = values.shape[-1] if len(values.shape) else None
        if size is not None and size <= self.column:
            raise ValueError(f"{self.name}: column {self.column} does not exist "
                             f"in {argument} of shape {tuple(values.shape)}.")
        return values[..., self.column:self.column + 1]

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self):
        return {**super().get_config(),
                "metric": keras.metrics.serialize(self.metric),
                "column": self.column}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["metric"] = keras.metrics.deserialize(config["metric"])
        return cls(**config)
