"""The Keras losses kmtl's tasks need beyond Keras's own.

- `ClassWeightedLoss`: a task loss with class weights (`Task(...,
  class_weight=...)`), the class-weighted mean over the labelled rows (and,
  for a multilabel task, labels) of a batch.
- `SparseCategoricalFocalCrossentropy`: the focal loss of a multiclass task,
  whose labels are class indices (Keras's `CategoricalFocalCrossentropy` takes
  one-hot labels).

Both are registered Keras objects (`package="kmtl"`), so a saved model loads
without `custom_objects`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmtl")
class ClassWeightedLoss(keras.losses.Loss):
    """A loss whose rows (and labels) weigh by their class: the weighted mean.

    A weight `w` is looked up from each label: `w_c` for the class index `c`
    of a sparse label (multiclass), `w_j^+` or `w_j^-` for a 0/1 label in
    column `j` (binary: one column; multilabel: one per label). With `l` the
    wrapped loss of each (row, column) and `m` the sample weight (kmtl's 0/1
    mask of labelled rows), the value is

        sum_{i,j} m_i w_ij l_ij / sum_{i,j} m_i w_ij

    so with every weight 1 it is the wrapped loss's mean over labelled rows,
    and a multilabel task with one label gives what the binary task gives.
    It is computed as per-row values `sum_j w_ij l_ij / sum_j w_ij` reduced
    with the row weights `m_i sum_j w_ij` (`reduction=
    "mean_with_sample_weight"`); a batch without labelled rows gives 0.
    Metrics are not affected: they get the plain mask.

    Class weights follow scikit-learn's `class_weight` (King and Zeng,
    "Logistic Regression in Rare Events Data", Political Analysis 2001, for
    the "balanced" rule `n / (k * n_c)`).

    Args:
        loss: a `keras.losses.Loss` (instance or config): the loss of one
            column, whose `call` reduces over the last axis (Keras's
            cross-entropies, focal losses, `MeanSquaredError`).
        class_weights: list. Sparse: one weight per class index, `(classes,)`.
            Dense: one `[negative, positive]` pair per column, `(columns, 2)`.
        sparse: bool, default False. True when the labels are class indices
            `(batch,)` (multiclass), False for 0/1 labels `(batch, columns)`.
        reduction: str, default `"mean_with_sample_weight"`.
        name: str or None, default None.
        dtype: the loss's dtype, default None (`keras.backend.floatx()`).

    Input shape:
        `y_true`: `(batch,)` class indices (sparse) or `(batch, columns)` 0/1;
        `y_pred`: `(batch, units)`.

    Output shape:
        `()`: the weighted mean.

    Raises:
        ValueError: `class_weights` of the wrong shape, or a weight that is not
            finite and > 0.

    Example:
        >>> loss = ClassWeightedLoss(keras.losses.BinaryCrossentropy(),
        ...                          [[1.0, 4.0]])
        >>> loss([[1.0], [0.0]], [[0.5], [0.5]])  # (4 + 1) ln 2 / 5
        0.6931...
    """

    def __init__(self, loss, class_weights, sparse=False,
                 reduction="mean_with_sample_weight", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.loss = (keras.losses.deserialize(loss) if isinstance(loss, dict)
                     else loss)
        weights = [[float(w) for w in pair] for pair in class_weights] if (
            not sparse) else [float(w) for w in class_weights]
        flat = [w for pair in weights for w in pair] if not sparse else weights
        shape_ok = sparse or all(len(pair) == 2 for pair in weights)
        if not weights or not shape_ok or not all(
                w > 0 and w < float("inf") for w in flat):
            what = ("one weight per class" if sparse
                    else "one [negative, positive] pair per column")
            raise ValueError(
                f"class_weights must be {what}, each finite and > 0. "
                f"Received: class_weights={class_weights!r}")
        self.class_weights = weights
        self.sparse = bool(sparse)

    def row_weights(self, y_true):
        """The weight of each label: `(batch,)` (sparse) or `(batch,
        columns)`."""
        table = ops.convert_to_tensor(self.class_weights, self.dtype)
        if self.sparse:
            index = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            return ops.take(table, index, axis=0)
        labels = ops.cast(y_true, self.dtype)
        return labels * table[:, 1] + (1.0 - labels) * table[:, 0]

    def call(self, y_true, y_pred):
        if self.sparse:
            return self.loss.call(y_true, y_pred)
        weights = self.row_weights(y_true)
        # One column at a time: the wrapped loss reduces over a last axis of 1.
        values = self.loss.call(ops.expand_dims(y_true, -1),
                                ops.expand_dims(y_pred, -1))
        return ops.sum(weights * values, axis=-1) / ops.sum(weights, axis=-1)

    def __call__(self, y_true, y_pred, sample_weight=None):
        weights = self.row_weights(ops.convert_to_tensor(y_true, self.dtype))
        if not self.sparse:
            weights = ops.sum(weights, axis=-1)
        if sample_weight is not None:
            weights = weights * ops.reshape(
                ops.cast(sample_weight, self.dtype), (-1,))
        return super().__call__(y_true, y_pred, sample_weight=weights)

    def get_config(self):
        return {**super().get_config(),
                "loss": keras.losses.serialize(self.loss),
                "class_weights": self.class_weights,
                "sparse": self.sparse}


@keras.saving.register_keras_serializable(package="kmtl")
class SparseCategoricalFocalCrossentropy(keras.losses.Loss):
    """The focal loss on class indices: Keras's categorical focal
    cross-entropy of the one-hot labels.

    Lin, Goyal, Girshick, He and Dollár, "Focal Loss for Dense Object
    Detection", ICCV 2017 (arXiv:1708.02002): `-alpha (1 - p_t)^gamma
    log(p_t)`, `p_t` the predicted probability of the true class, so rows
    the model already gets right weigh less. `gamma=0, alpha=1` is the
    sparse categorical cross-entropy.

    Args:
        alpha: float, default 0.25 (Keras's default). A constant factor of the
            loss (Keras's `categorical_focal_crossentropy`).
        gamma: float >= 0, default 2.0 (the paper's). The focusing parameter.
        from_logits: bool, default False. `y_pred` are logits.
        reduction: str, default `"sum_over_batch_size"`.
        name: str, default `"sparse_categorical_focal_crossentropy"`.
        dtype: the loss's dtype, default None (`keras.backend.floatx()`).

    Input shape:
        `y_true`: `(batch,)` class indices; `y_pred`: `(batch, classes)`.

    Output shape:
        `()`, or `(batch,)` with `reduction=None`.

    Raises:
        ValueError: `alpha` outside [0, 1] or `gamma` < 0.

    Example:
        >>> loss = SparseCategoricalFocalCrossentropy(alpha=1.0, gamma=2.0)
        >>> loss([0], [[0.5, 0.5]])  # (1 - 0.5)^2 ln 2
        0.1732...
    """

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False,
                 reduction="sum_over_batch_size",
                 name="sparse_categorical_focal_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
        if not float(gamma) >= 0.0:
            raise ValueError(f"gamma must be >= 0. Received: gamma={gamma!r}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        index = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        one_hot = ops.one_hot(index, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_focal_crossentropy(
            one_hot, y_pred, alpha=self.alpha, gamma=self.gamma,
            from_logits=self.from_logits)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma,
                "from_logits": self.from_logits}


def binary_focal_loss(alpha, gamma):
    """Keras's `BinaryFocalCrossentropy` for a binary or multilabel task.

    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017
    (arXiv:1708.02002): `-alpha_t (1 - p_t)^gamma log(p_t)`.

    Args:
        alpha: float in [0, 1] or None. The weight of the positive class
            (`1 - alpha` for the negative, `apply_class_balancing=True`);
            None: no class balancing.
        gamma: float >= 0. The focusing parameter; 0 without alpha is the
            binary cross-entropy.

    Returns:
        A `keras.losses.BinaryFocalCrossentropy`.
    """
    return keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=alpha is not None,
        alpha=0.25 if alpha is None else alpha, gamma=gamma)


def sparse_focal_loss(alpha, gamma):
    """`SparseCategoricalFocalCrossentropy` for a multiclass task.

    Args:
        alpha: float in [0, 1] or None. A constant factor of the loss (as in
            Keras's categorical focal cross-entropy); None: 1.
        gamma: float >= 0. The focusing parameter; 0 without alpha is the
            sparse categorical cross-entropy.

    Returns:
        A `SparseCategoricalFocalCrossentropy`.
    """
    return SparseCategoricalFocalCrossentropy(
        alpha=1.0 if alpha is None else alpha, gamma=gamma)
