"""Label issues: which given labels a model's out-of-fold predictions doubt, and
which label the model would give.

Classification tasks (binary, multiclass, multilabel) use confident learning
through cleanlab: Northcutt, Jiang and Chuang, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 70, 2021 (arXiv:1911.00068).
`cleanlab.filter.find_label_issues` flags the labels whose class the
predicted probabilities contradict beyond the estimated noise rates, and
`cleanlab.rank.get_label_quality_scores` scores each label in [0, 1]
(self-confidence: the predicted probability of the given label); the
multilabel variants are `cleanlab.multilabel_classification`'s. The
probabilities must be out-of-fold: from a model that did not train on the
row (`kmtl.runs.consolidation` cross-fits them).

Regression tasks have no class probabilities. A label is flagged when its
out-of-fold residual `y - y_hat` lies more than `residual_threshold` robust
standard deviations (1.4826 x the median absolute deviation of the
residuals) from their median, in any target column; its quality is
cleanlab's regression score (`cleanlab.regression.rank.get_label_quality_scores`,
the residual-based `outre` method), the lowest over the target columns.

A model trained on noisy labels predicts noisy probabilities: with 20% of a
binary task's labels flipped, no row's predicted probability of either class
is far above 0.8. The model's label and its confidence (`suggest_labels`)
are therefore taken from noise-corrected probabilities when a noise matrix
is given: `N[i, j] = P(given label i | true label j)`, estimated by cleanlab
from the out-of-fold probabilities and the given labels (`noise_matrix`,
`cleanlab.count.estimate_py_and_noise_matrices_from_probabilities`), and
`p_true = N^-1 p_noisy`, clipped to [0, 1] and renormalised: the backward
correction of Patrini et al., "Making Deep Neural Networks Robust to Label
Noise: a Loss Correction Approach", CVPR 2017 (arXiv:1609.03683).

Every function takes one task's labels as `encoded_labels` returns them and
its predictions as the model outputs them: `(rows, units)`, probabilities for
classification, label units for regression.
"""

import numpy as np

from kmtl.errors import DataError

__all__ = [
    "FILTERS",
    "MAD_SCALE",
    "class_probabilities",
    "corrected_probabilities",
    "encoded_labels",
    "find_label_issues",
    "label_sets",
    "label_values",
    "noise_matrix",
    "suggest_labels",
]

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given")
"""cleanlab's `filter_by` methods (`cleanlab.filter.find_label_issues`)."""

MAD_SCALE = 1.4826
"""The median absolute deviation times this is the standard deviation of a
normal distribution: the robust standard deviation of the residual rule."""


def encoded_labels(task, frame):
    """The labelled rows of `frame` for `task` and their labels.

    Args:
        task: a fitted `kmtl.Task`.
        frame: DataFrame holding the task's target columns.

    Returns:
        `(labelled, labels)`: bool `(rows,)`, and the labels of the labelled
        rows: int `(n,)` class indices (binary: 1 for `positive`),
        int `(n, labels)` of 0/1 (multilabel) or float `(n, targets)`
        (regression).
    """
    encoded, _ = task.encode(frame)
    labelled = task.labelled(frame)
    encoded = np.asarray(encoded)[labelled]
    if task.type == "binary":
        return labelled, (encoded[:, 0] > 0.5).astype("int64")
    if task.type == "multiclass":
        return labelled, encoded.astype("int64")
    if task.type == "multilabel":
        return labelled, (encoded > 0.5).astype("int64")
    return labelled, encoded.astype("float64")


def class_probabilities(task, predictions):
    """`(rows, classes)` probabilities in cleanlab's form: binary `[1 - p,
    p]`, multiclass rows renormalised to sum to 1 (a float32 softmax row may
    be off by 1e-7), multilabel as the model outputs them; None for a
    regression task."""
    predictions = np.asarray(predictions, dtype="float64")
    if task.type == "binary":
        p = np.clip(predictions[:, 0], 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)
    if task.type == "multiclass":
        probabilities = np.clip(predictions, 0.0, 1.0)
        return probabilities / probabilities.sum(axis=1, keepdims=True)
    if task.type == "multilabel":
        return np.clip(predictions, 0.0, 1.0)
    return None


def find_label_issues(task, labels, predictions, filter_by="prune_by_noise_rate",
                      residual_threshold=3.0):
    """Flags the labels the out-of-fold predictions doubt, and scores each.

    Args:
        task: a fitted `kmtl.Task`.
        labels: the labelled rows' labels, as `encoded_labels` returns them.
        predictions: `(n, units)` out-of-fold predictions of the same rows.
        filter_by: str, cleanlab's method (`FILTERS`); classification only.
        residual_threshold: float > 0, the residual rule's bound in robust
            standard deviations; regression only.

    Returns:
        `(issues, quality)`: bool `(n,)` and float `(n,)` in [0, 1] (low:
        likely wrong). Fewer than two distinct labels give no issues (there
        is no other class to confuse them with).

    Raises:
        DataError: predictions that are not finite.
    """
    predictions = np.asarray(predictions, dtype="float64")
    if not np.isfinite(predictions).all():
        raise DataError(f"Task '{task.name}': the out-of-fold predictions hold "
                        f"non-finite values, so no label can be scored.")
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    if task.type == "regression":
        return _residual_issues(labels, predictions, residual_threshold)
    from cleanlab import filter as cleanlab_filter
    from cleanlab import multilabel_classification
    from cleanlab import rank

    probabilities = class_probabilities(task, predictions)
    if task.type == "multilabel":
        lists = [np.flatnonzero(row).tolist() for row in labels]
        quality = multilabel_classification.get_label_quality_scores(
            lists, probabilities)
        if labels.any(axis=0).sum() == 0 or labels.all(axis=0).all():
            return np.zeros(n, dtype=bool), quality
        issues = multilabel_classification.filter.find_label_issues(
            lists, probabilities, filter_by=filter_by, n_jobs=1)
        return np.asarray(issues, dtype=bool), quality
    quality = rank.get_label_quality_scores(labels, probabilities)
    if len(np.unique(labels)) < 2:
        return np.zeros(n, dtype=bool), quality
    issues = cleanlab_filter.find_label_issues(labels, probabilities,
                                               filter_by=filter_by, n_jobs=1)
    return np.asarray(issues, dtype=bool), quality


def _residual_issues(labels, predictions, threshold):
    from cleanlab.regression.rank import get_label_quality_scores

    residuals = labels - predictions
    centre = np.median(residuals, axis=0)
    spread = MAD_SCALE * np.median(np.abs(residuals - centre), axis=0)
    spread = np.where(spread > 0, spread, np.finfo("float64").tiny)
    z = np.abs(residuals - centre) / spread
    issues = (z > threshold).any(axis=1)
    quality = np.min([get_label_quality_scores(labels[:, j], predictions[:, j])
                      for j in range(labels.shape[1])], axis=0)
    return issues, quality


def noise_matrix(task, labels, predictions):
    """cleanlab's estimate of a binary or multiclass task's noise matrix from
    out-of-fold probabilities: `(classes, classes)`, `N[i, j] = P(given label
    i | true label j)`, each column summing to 1.

    Args:
        task: a fitted `kmtl.Task`.
        labels: int `(n,)`, the given labels (`encoded_labels`).
        predictions: `(n, units)` out-of-fold predictions of the same rows.

    Returns:
        float64 `(k, k)`, or None for a multilabel or regression task, or
        when the labels hold fewer than two classes.
    """
    if task.type not in ("binary", "multiclass") or len(np.unique(labels)) < 2:
        return None
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    probabilities = class_probabilities(task, predictions)
    _, matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(
        np.asarray(labels), probabilities)
    return np.asarray(matrix, dtype="float64")


def corrected_probabilities(probabilities, matrix):
    """`N^-1 p` for each row of `probabilities` `(rows, k)`, clipped to
    [0, 1] and renormalised (rows that correct to all zeros keep `p`)."""
    corrected = np.linalg.lstsq(matrix, probabilities.T, rcond=None)[0].T
    corrected = np.clip(corrected, 0.0, 1.0)
    total = corrected.sum(axis=1, keepdims=True)
    return np.where(total > 0, corrected / np.where(total > 0, total, 1.0),
                    probabilities)


def suggest_labels(task, predictions, matrix=None):
    """The model's label for each row and its confidence.

    Args:
        task: a fitted `kmtl.Task`.
        predictions: `(rows, units)` predictions.
        matrix: None, or a binary or multiclass task's noise matrix
            (`noise_matrix`): the label and confidence are then taken from
            the noise-corrected probabilities (`corrected_probabilities`).

    Returns:
        `(suggested, confidence)`: suggested labels in `encoded_labels`'s
        form; confidence float `(rows,)` in [0.5, 1] (binary: max(p, 1 - p)),
        [1/k, 1] (multiclass: the top probability) or [0.5, 1] (multilabel:
        the least confident label's max(p, 1 - p)); NaN for regression,
        whose predictions carry no confidence.
    """
    predictions = np.asarray(predictions, dtype="float64")
    if matrix is not None:
        probabilities = corrected_probabilities(
            class_probabilities(task, predictions), np.asarray(matrix))
        predictions = (probabilities[:, 1:] if task.type == "binary"
                       else probabilities)
    if task.type == "binary":
        p = predictions[:, 0]
        return (p >= 0.5).astype("int64"), np.maximum(p, 1.0 - p)
    if task.type == "multiclass":
        return predictions.argmax(axis=1), predictions.max(axis=1)
    if task.type == "multilabel":
        return ((predictions >= 0.5).astype("int64"),
                np.maximum(predictions, 1.0 - predictions).min(axis=1))
    return predictions, np.full(len(predictions), np.nan)


def label_sets(task, suggested, delimiter="|"):
    """A multilabel task's 0/1 rows `(rows, labels)` as text: the names of
    the labels on, joined by `delimiter` (`""` for none)."""
    names = np.asarray(task.classes, dtype=object)
    return np.array([delimiter.join(map(str, names[np.asarray(row) == 1]))
                     for row in suggested], dtype=object)


def label_values(task, suggested, negative=0):
    """Suggested labels (`suggest_labels`' form) as the values of the task's
    target columns, ready to be written into the table.

    Args:
        task: a fitted binary, multiclass or multilabel `kmtl.Task`.
        suggested: the encoded labels of some rows.
        negative: the value a binary task writes for a negative label (its
            column's other value, e.g. 0 or `"no"`).

    Returns:
        `{target column: (rows,) array}`.

    Raises:
        ValueError: a regression task (its labels are not suggested).
    """
    suggested = np.asarray(suggested)
    column = task.target_columns[0]
    if task.type == "binary":
        values = np.asarray([negative, task.positive], dtype=object)
        return {column: values[(suggested == 1).astype("int64")]}
    if task.type == "multiclass":
        return {column: np.asarray(task.classes, dtype=object)[suggested]}
    if task.type == "multilabel":
        if task.delimiter is not None:
            return {column: label_sets(task, suggested, task.delimiter)}
        return {c: suggested[:, i] for i, c in enumerate(task.target_columns)}
    raise ValueError(f"Task '{task.name}': a {task.type} task's labels are not "
                     f"suggested.")
