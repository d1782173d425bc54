"""Tests of `kmtl.measures.label_issues` (which given labels out-of-fold
predictions doubt, which label the model would give) and of
`kmtl.data.fold_ids` (the folds of the cross-fitting), on hand-built labels
and predictions: no training."""

import numpy as np
import pandas as pd
import pytest

from kmtl.data import fold_ids
from kmtl.errors import ConfigError
from kmtl.measures.label_issues import MAD_SCALE
from kmtl.measures.label_issues import corrected_probabilities
from kmtl.measures.label_issues import encoded_labels
from kmtl.measures.label_issues import find_label_issues
from kmtl.measures.label_issues import label_values
from kmtl.measures.label_issues import noise_matrix
from kmtl.measures.label_issues import suggest_labels
from kmtl.tasks import Task

# === find_label_issues ===


def test_binary_flags_labels_that_contradict_a_confident_prediction():
    # 20 negatives predicted p = 0.1, 20 positives predicted p = 0.9, then two
    # negatives the model calls positive (p = 0.95, 0.9) and two positives it
    # calls negative (p = 0.05, 0.1): only those four contradict it.
    task = Task("buy", "binary", positive="yes")
    labels = np.array([0] * 20 + [1] * 20 + [0, 0, 1, 1])
    p = np.array([0.1] * 20 + [0.9] * 20 + [0.95, 0.9, 0.05, 0.1])
    issues, quality = find_label_issues(task, labels, p[:, None])
    assert np.flatnonzero(issues).tolist() == [40, 41, 42, 43]
    # Quality is self-confidence: p for a positive label, 1 - p for a negative.
    np.testing.assert_allclose(quality, np.where(labels == 1, p, 1 - p), atol=1e-12)
    assert quality[40] == pytest.approx(0.05)
    assert quality[0] == pytest.approx(0.9)


def test_multiclass_flags_the_planted_contradictions():
    task = Task("kind", "multiclass", classes=["a", "b", "c"])
    truth = np.repeat([0, 1, 2], 15)
    probabilities = np.full((45, 3), 0.05)
    probabilities[np.arange(45), truth] = 0.9
    given = truth.copy()
    given[[3, 20, 40]] = [1, 2, 0]
    issues, quality = find_label_issues(task, given, probabilities)
    assert np.flatnonzero(issues).tolist() == [3, 20, 40]
    # Self-confidence: the predicted probability of the given class.
    np.testing.assert_allclose(quality, probabilities[np.arange(45), given])


def test_multilabel_flags_the_planted_contradictions():
    task = Task("tags", "multilabel", target=["c1", "c2", "c3"])
    truth = np.zeros((40, 3), dtype="int64")
    truth[:20, 0] = 1
    truth[10:30, 1] = 1
    truth[25:, 2] = 1
    probabilities = np.where(truth == 1, 0.92, 0.06)
    given = truth.copy()
    given[5, 0] = 0    # a label the model is sure of, left out
    given[33, 1] = 1   # a label the model is sure is wrong, added
    issues, quality = find_label_issues(task, given, probabilities)
    assert np.flatnonzero(issues).tolist() == [5, 33]
    assert quality[[5, 33]].max() < quality[np.flatnonzero(~issues)].min()


def test_one_class_has_nothing_to_confuse():
    task = Task("buy", "binary", positive="yes")
    issues, quality = find_label_issues(task, np.ones(6, dtype="int64"),
                                        np.full((6, 1), 0.02))
    assert not issues.any()
    np.testing.assert_allclose(quality, 0.02)


def test_non_finite_predictions_are_a_data_error():
    from kmtl.errors import DataError

    task = Task("buy", "binary", positive="yes")
    with pytest.raises(DataError, match="buy"):
        find_label_issues(task, np.array([0, 1]), np.array([[0.2], [np.nan]]))


def _residual_case():
    """Predictions and labels whose residuals are nine small values, one at
    2.5 and one at 3.5 robust standard deviations.

    The residuals' median is 0 (the 6th of 11 sorted values) and their
    absolute deviations sorted are 0, 0, 0, .5, .5, 1, 1, 1, 1, 3.71, 5.19:
    the median absolute deviation is 1, the robust sd 1.4826.
    """
    sd = MAD_SCALE * 1.0
    residuals = np.array([-1, -1, -0.5, 0, 0, 0, 0.5, 1, 1, 2.5 * sd, 3.5 * sd])
    predictions = np.linspace(10.0, 20.0, len(residuals))[:, None]
    return predictions + residuals[:, None], predictions


def test_regression_residual_rule():
    task = Task("price", "regression")
    labels, predictions = _residual_case()
    issues, quality = find_label_issues(task, labels, predictions)
    assert np.flatnonzero(issues).tolist() == [10]  # 3.5 sd, not 2.5 sd
    assert quality.shape == (11,)
    assert ((quality >= 0) & (quality <= 1)).all()
    assert quality.argmin() == 10
    lower, _ = find_label_issues(task, labels, predictions, residual_threshold=2.0)
    assert np.flatnonzero(lower).tolist() == [9, 10]
    higher, _ = find_label_issues(task, labels, predictions, residual_threshold=4.0)
    assert not higher.any()


def test_regression_rule_looks_at_every_target_column():
    task = Task("size", "regression", target=["w", "h"])
    labels, predictions = _residual_case()
    # Column 2 is column 1 reversed: its outlier (3.5 sd) is row 0.
    labels = np.hstack([labels, labels[::-1]])
    predictions = np.hstack([predictions, predictions[::-1]])
    issues, _ = find_label_issues(task, labels, predictions)
    assert np.flatnonzero(issues).tolist() == [0, 10]


# === suggest_labels and label_values ===


def test_suggested_labels_and_confidence_by_hand():
    binary = Task("buy", "binary", positive="yes")
    suggested, confidence = suggest_labels(binary, [[0.8], [0.3], [0.5], [0.02]])
    assert suggested.tolist() == [1, 0, 1, 0]
    np.testing.assert_allclose(confidence, [0.8, 0.7, 0.5, 0.98])

    multiclass = Task("kind", "multiclass", classes=["a", "b", "c"])
    suggested, confidence = suggest_labels(
        multiclass, [[0.2, 0.5, 0.3], [0.7, 0.1, 0.2], [0.3, 0.3, 0.4]])
    assert suggested.tolist() == [1, 0, 2]
    np.testing.assert_allclose(confidence, [0.5, 0.7, 0.4])

    multilabel = Task("tags", "multilabel", target=["c1", "c2", "c3"])
    suggested, confidence = suggest_labels(
        multilabel, [[0.9, 0.2, 0.6], [0.1, 0.97, 0.05]])
    assert suggested.tolist() == [[1, 0, 1], [0, 1, 0]]
    # The least confident label: min(0.9, 0.8, 0.6), min(0.9, 0.97, 0.95).
    np.testing.assert_allclose(confidence, [0.6, 0.9])

    regression = Task("price", "regression")
    suggested, confidence = suggest_labels(regression, [[3.5], [-1.0]])
    assert suggested.tolist() == [[3.5], [-1.0]]
    assert np.isnan(confidence).all()


def test_binary_label_values_round_trip():
    task = Task("buy", "binary", positive="yes")
    task.fit(pd.DataFrame({"buy": ["yes", "no", "no"]}))
    values = label_values(task, np.array([1, 0, 1]), negative="no")
    assert values["buy"].tolist() == ["yes", "no", "yes"]
    _, labels = encoded_labels(task, pd.DataFrame(values))
    assert labels.tolist() == [1, 0, 1]
    numbers = Task("clicked", "binary").fit(pd.DataFrame({"clicked": [0, 1]}))
    assert label_values(numbers, np.array([0, 1]))["clicked"].tolist() == [0, 1]


def test_multiclass_label_values_round_trip():
    task = Task("kind", "multiclass")
    task.fit(pd.DataFrame({"kind": ["b", "a", "c", "a"]}))
    suggested = np.array([2, 0, 1, 1])
    values = label_values(task, suggested)
    assert values["kind"].tolist() == [task.classes[i] for i in suggested]
    assert set(values["kind"]) == {"a", "b", "c"}
    _, labels = encoded_labels(task, pd.DataFrame(values))
    assert labels.tolist() == suggested.tolist()


def test_multilabel_label_values_round_trip():
    delimited = Task("tags", "multilabel", target="tags", delimiter="|")
    delimited.fit(pd.DataFrame({"tags": ["x|y", "y", "z", ""]}))
    suggested = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]])
    values = label_values(delimited, suggested)
    names = delimited.classes
    assert values["tags"].tolist() == [f"{names[0]}|{names[2]}", "",
                                       "|".join(names)]
    _, labels = encoded_labels(delimited, pd.DataFrame(values))
    assert labels.tolist() == suggested.tolist()

    columns = Task("flags", "multilabel", target=["c1", "c2"])
    columns.fit(pd.DataFrame({"c1": [1, 0], "c2": [0, 1]}))
    values = label_values(columns, np.array([[1, 0], [1, 1], [0, 0]]))
    assert {k: v.tolist() for k, v in values.items()} == {
        "c1": [1, 1, 0], "c2": [0, 1, 0]}


def test_regression_labels_are_not_suggested():
    with pytest.raises(ValueError, match="price"):
        label_values(Task("price", "regression"), np.array([[1.0]]))


# === fold_ids ===


def _binary_frame(rows=100, positives=31, seed=0):
    rng = np.random.default_rng(seed)
    label = np.zeros(rows, dtype="int64")
    label[rng.choice(rows, positives, replace=False)] = 1
    frame = pd.DataFrame({"x": rng.normal(size=rows), "y": label,
                          "g": rng.integers(0, 17, rows),
                          "t": rng.permutation(rows).astype("float64")})
    return frame, [Task("y", "binary").fit(frame)]


@pytest.mark.parametrize("method", ["random", "per_task", "stratified"])
def test_every_row_is_in_exactly_one_fold(method):
    frame, tasks = _binary_frame()
    ids = fold_ids(frame, tasks, 3, method, seed=4)
    assert ids.shape == (100,) and ids.dtype == np.int64
    sizes = np.bincount(ids)
    assert sizes.tolist() == [34, 33, 33]  # each row once, as even as can be
    assert (fold_ids(frame, tasks, 3, method, seed=4) == ids).all()


def test_stratified_folds_keep_the_class_balance():
    frame, tasks = _binary_frame()
    ids = fold_ids(frame, tasks, 3, "stratified", seed=1)
    for value in (0, 1):
        counts = np.bincount(ids[frame["y"].to_numpy() == value], minlength=3)
        assert counts.max() - counts.min() <= 1, (value, counts)
    # 31 positives: 11, 10, 10 in some order.
    assert sorted(np.bincount(ids[frame["y"].to_numpy() == 1])) == [10, 10, 11]


def test_group_folds_keep_groups_whole():
    frame, tasks = _binary_frame()
    ids = fold_ids(frame, tasks, 4, "group", seed=0, group_by="g")
    per_group = pd.Series(ids).groupby(frame["g"].to_numpy()).nunique()
    assert (per_group == 1).all()
    assert sorted(set(ids)) == [0, 1, 2, 3]


def test_ordered_folds_are_contiguous_blocks():
    frame, tasks = _binary_frame(rows=10, positives=4)
    ids = fold_ids(frame, tasks, 3, "ordered", order_by="t")
    in_time_order = ids[np.argsort(frame["t"].to_numpy())]
    assert in_time_order.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert fold_ids(frame, tasks, 2, "ordered").tolist() == [0] * 5 + [1] * 5


@pytest.mark.parametrize("folds", [1, 0, 11, 2.5, True])
def test_bad_fold_counts_are_config_errors(folds):
    frame, tasks = _binary_frame(rows=10, positives=4)
    with pytest.raises(ConfigError, match=r"consolidate\.folds"):
        fold_ids(frame, tasks, folds, "random")


def test_more_folds_than_groups_is_a_config_error():
    frame, tasks = _binary_frame(rows=10, positives=4)
    frame["g"] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    with pytest.raises(ConfigError, match=r"consolidate\.folds.*4 groups.*has 3"):
        fold_ids(frame, tasks, 4, "group", group_by="g")


# === Noise-corrected suggestions ===


def test_corrected_probabilities_invert_a_known_noise_matrix():
    # P(given i | true j): 20% of negatives and 10% of positives flipped.
    matrix = np.array([[0.8, 0.1], [0.2, 0.9]])
    true = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.3]])
    noisy = true @ matrix.T        # p_noisy = N p_true, row by row
    np.testing.assert_allclose(noisy[0], [0.8, 0.2])
    np.testing.assert_allclose(corrected_probabilities(noisy, matrix), true,
                               atol=1e-12)


def test_noise_matrix_makes_flipped_negatives_confident():
    # A rare positive class with 20% of all labels flipped: the noisy model's
    # probabilities stay within [0.2, 0.8], so no raw confidence reaches 0.9;
    # corrected by cleanlab's estimated noise matrix, the flipped negatives
    # are suggested back with confidence >= 0.9.
    rng = np.random.default_rng(0)
    n = 20_000
    p_true = 1 / (1 + np.exp(-(3 * rng.normal(size=n) - 5)))
    truth = (rng.random(n) < p_true).astype("int64")
    flipped = rng.random(n) < 0.2
    given = np.where(flipped, 1 - truth, truth)
    task = Task("income", "binary")
    task.positive = 1
    predictions = (0.2 + 0.6 * p_true)[:, None]
    matrix = noise_matrix(task, given, predictions)
    assert matrix.shape == (2, 2)
    np.testing.assert_allclose(matrix.sum(axis=0), [1.0, 1.0])
    assert abs(matrix[1, 0] - 0.2) < 0.02          # P(given 1 | true 0)
    _, raw = suggest_labels(task, predictions)
    assert raw.max() <= 0.8 + 1e-9
    suggested, confidence = suggest_labels(task, predictions, matrix)
    relabel = (suggested != given) & (confidence >= 0.9)
    assert relabel.sum() > 0.1 * flipped.sum()
    assert (suggested[relabel] == truth[relabel]).mean() > 0.85
