"""Property-based tests of `kmtl.data.make_dataset` (issue 14, deliverable 8).

Features and tasks are fitted on one generated table (`fit_tasks_and_features`)
and batches are made of another (unseen and unicode categories, missing
values, many categories, a single row, no row). Either a `DataError` names
the column, or: the batch count and sizes follow `batch_size` and
`drop_remainder`; every row comes once per epoch, shuffled or not, with its
own labels; each sample weight is 1 exactly where the row's label is present;
the encoded numeric block is NaN exactly where the raw value is missing (the
model imputes it) and finite elsewhere; categorical indices stay inside the
vocabulary; and a model fed the batches gives finite outputs.
"""

import math

import keras
import numpy as np
import pandas as pd
import pytest
from fuzz_values import examples
from fuzz_values import unicode_text
from helpers import fit_tasks_and_features
from hypothesis import event
from hypothesis import given
from hypothesis import strategies as st

import kmtl
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.features import encode_frame

# Generated tables often hold categories unseen in training or constant
# columns; kmtl's warnings about them are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TASKS = (("clicked", "binary"), ("price", "regression"), ("kind", "multiclass"))
CATEGORY = st.one_of(st.none(), st.sampled_from(["a", "b", "é", "Ω 1", "列", "",
                                                 "🐧", "nan"]), unicode_text)


@st.composite
def tables(draw, min_rows=0, max_rows=30, inf=False):
    """A table with a row id `rid`, a numeric feature `x` (NaN, and inf when
    `inf`), a unicode categorical `color`, an integer categorical `level`,
    and the labels of TASKS (each missing on some rows)."""
    rows = draw(st.integers(min_rows, max_rows))
    numbers = st.one_of(st.none(), st.floats(-1e6, 1e6))
    if inf:
        numbers = st.one_of(numbers, st.sampled_from([math.inf, -math.inf, 1e39]))

    def column(cells):
        return draw(st.lists(cells, min_size=rows, max_size=rows))

    many = draw(st.integers(0, 4)) == 0  # a category per row
    return pd.DataFrame({
        "rid": np.arange(rows, dtype="float64"),
        "x": pd.Series(column(numbers), dtype="float64"),
        "color": ([f"c{i}{draw(unicode_text)}" for i in range(rows)] if many
                  else column(CATEGORY)),
        "level": column(st.integers(-3, 3)),
        "clicked": pd.Series(column(st.sampled_from([0.0, 1.0, None])),
                             dtype="float64"),
        "price": pd.Series(column(st.none() | st.floats(-1e3, 1e3)),
                           dtype="float64"),
        "kind": column(st.sampled_from(["A", "B", "ü", None])),
    })


def fitted(train):
    """`(features, tasks)` fitted on `train`, or None when fitting refuses
    the table with a DataError (a task without any label, or binary labels
    of one class)."""
    try:
        return fit_tasks_and_features(
            train, [kmtl.Task(name, kind) for name, kind in TASKS],
            numeric=["rid", "x"], categorical=["color", "level"])
    except DataError as error:
        assert ("no row of the training data has a label" in str(error)
                or "needs both classes" in str(error)), error
        event("training table refused")
        return None


@examples(25)
@given(tables(min_rows=1), tables(), st.integers(1, 12), st.booleans(),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_batches(train, frame, batch_size, shuffle, drop_remainder, seed):
    fit = fitted(train)
    if fit is None:
        return
    features, tasks = fit
    try:
        dataset = make_dataset(frame, features, tasks, batch_size=batch_size,
                               shuffle=shuffle, seed=seed,
                               drop_remainder=drop_remainder, encoded=False)
    except DataError as error:
        # A multiclass label unseen in training is the only refusal here.
        assert "Task 'kind'" in str(error) and "classes" in str(error), error
        return
    rows = len(frame)
    expected = rows // batch_size if drop_remainder else -(-rows // batch_size)
    for _ in range(2):  # two epochs: a shuffled one draws a new order
        batches = list(dataset)
        assert len(batches) == expected
        seen = []
        for x, labels, weights in batches:
            size = x["rid"].shape[0]
            assert size == batch_size or (not drop_remainder and size < batch_size)
            ids = x["rid"].numpy()[:, 0].astype(int)
            seen.extend(ids)
            part = frame.iloc[ids]
            for task in tasks:
                np.testing.assert_array_equal(
                    weights[task.name].numpy(),
                    part[task.name].notna().to_numpy("float32"))
            labelled = part["price"].notna().to_numpy()
            np.testing.assert_array_equal(
                labels["price"].numpy()[labelled, 0],
                part["price"][labelled].to_numpy("float32"))
            np.testing.assert_array_equal(
                x["level"].numpy()[:, 0], part["level"].to_numpy("int64"))
        if drop_remainder:
            assert len(set(seen)) == len(seen) == expected * batch_size
        else:
            assert sorted(seen) == list(range(rows))


@examples(40)
@given(tables(min_rows=1), tables(inf=True), st.integers(1, 8))
def test_encoded_blocks(train, frame, batch_size):
    fit = fitted(train)
    if fit is None:
        return
    features, _ = fit
    try:
        batches = list(make_dataset(frame, features, None, batch_size))
    except DataError as error:
        x = frame["x"].to_numpy()
        assert np.isinf(x).any() or (np.abs(np.nan_to_num(x)) > 3.4e38).any()
        assert "Feature 'x'" in str(error), error
        return
    if not len(frame):
        assert batches == []
        return
    numeric = np.concatenate([b["encoded:numeric"].numpy() for b in batches])
    categorical = np.concatenate([b["encoded:categorical"].numpy()
                                  for b in batches])
    assert numeric.shape[0] == categorical.shape[0] == len(frame)
    # Columns: rid, x, then the missing indicators of the features that had
    # missing values in training.
    np.testing.assert_array_equal(np.isnan(numeric[:, 1]), frame["x"].isna())
    assert np.isfinite(numeric[:, 0]).all()
    sizes = [len(f.vocabulary) for f in features if f.kind == "categorical"]
    assert (categorical >= 0).all()
    assert (categorical <= np.array(sizes)).all()  # 0: out of vocabulary


@examples(6)
@given(tables(min_rows=1, max_rows=12), tables(min_rows=1, max_rows=12))
def test_model_outputs_are_finite(train, frame):
    """A model imputes missing numbers: its outputs are finite on any rows."""
    fit = fitted(train)
    if fit is None:
        return
    features, tasks = fit
    keras.utils.set_random_seed(0)
    try:
        model = kmtl.build_model(features, tasks, tower_units=[4], units=[4])
    except ConfigError as error:  # pragma: no cover - reported, not expected
        raise AssertionError(error) from None
    event("model built")
    for x in make_dataset(frame, features, None, batch_size=5):
        for task, output in model(x).items():
            assert np.isfinite(keras.ops.convert_to_numpy(output)).all(), task


@examples(2)
@given(st.integers(20_000, 50_000), st.sampled_from(["é", "列", "🐧 ", ""]))
def test_many_categories(count, prefix):
    """Tens of thousands of distinct unicode categories: one vocabulary entry
    each, indices 1..count in training, 0 for unseen ones."""
    train = pd.DataFrame({"color": [f"{prefix}{i}" for i in range(count)],
                          "y": np.arange(count) % 2})
    features, tasks = fit_tasks_and_features(
        train, [kmtl.Task("y", "binary")], categorical=["color"])
    assert len(features[0].vocabulary) == count
    frame = pd.concat([train.iloc[::997], pd.DataFrame({"color": ["unseen"],
                                                        "y": [1]})])
    (x, _, weights), = list(make_dataset(frame, features, tasks,
                                         batch_size=len(frame)))
    indices = x["encoded:categorical"].numpy()[:, 0]
    assert indices[-1] == 0
    assert len(set(indices[:-1])) == len(frame) - 1 and indices[:-1].min() >= 1
    np.testing.assert_array_equal(weights["y"].numpy(), np.ones(len(frame)))


@examples(100)
@given(st.lists(st.none() | st.floats(width=32, allow_nan=False,
                                      allow_infinity=False), min_size=1,
                max_size=20))
def test_numeric_statistics(values):
    """Any finite float32 values: a DataError about their spread, or a mean
    and variance that are finite in float32, and encoded training values
    that are finite wherever the value is present."""
    frame = pd.DataFrame({"x": pd.Series(values, dtype="float64")})
    try:
        feature = Feature("x", "numeric").fit(frame)
    except DataError as error:
        assert "Feature 'x'" in str(error) and "spread" in str(error), error
        return
    assert np.isfinite(np.float32(feature.mean))
    assert np.isfinite(np.float32(feature.variance)) and feature.variance > 0
    encoded = encode_frame([feature], frame)["encoded:numeric"][:, 0]
    present = frame["x"].notna().to_numpy()
    assert np.isfinite(encoded[present]).all()
    assert np.isnan(encoded[~present]).all()


TAG_CELLS = st.one_of(st.none(), st.sampled_from(["a", "b|c", "a|a", "", "|",
                                                  "é|🐧", " a | b "]),
                      unicode_text)
FLAG_CELLS = st.one_of(st.none(), st.sampled_from([0, 1, 0.0, 1.0, 2, -1,
                                                   math.inf, "yes"]))


@examples(100)
@given(st.booleans(), st.integers(1, 8), st.data())
def test_multilabel_labels(delimited, rows, data):
    """Multilabel tasks on delimited tags or 0/1 columns with stray values:
    a DataError or ConfigError naming the task, or 0/1 labels of one column
    per label, weighted 1 exactly on the rows with every target present."""
    def table(cells, columns):
        return pd.DataFrame({c: data.draw(st.lists(cells, min_size=rows,
                                                   max_size=rows))
                             for c in columns})

    if delimited:
        train, frame = table(TAG_CELLS, ["tags"]), table(TAG_CELLS, ["tags"])
        options = {"target": "tags",
                   "delimiter": data.draw(st.sampled_from(["|", ",", " "]))}
    else:
        train, frame = (table(FLAG_CELLS, ["s", "n"]),
                        table(FLAG_CELLS, ["s", "n"]))
        options = {"target": ["s", "n"]}
    try:
        task = kmtl.Task("tags", "multilabel", **options).fit(train)
        labels, weights = task.encode(frame)
    except (DataError, ConfigError) as error:
        assert "Task 'tags'" in str(error), error
        return
    assert labels.shape == (rows, task.units)
    assert set(np.unique(labels)) <= {0.0, 1.0}
    targets = frame[task.target_columns].notna().all(axis=1).to_numpy()
    np.testing.assert_array_equal(weights, targets.astype("float32"))
