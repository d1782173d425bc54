"""Tests for `kmtl.data`: reading tables, combining task tables, splits and the
tf.data pipeline."""

import gzip

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import kmtl
from kmtl.data import combine_task_tables
from kmtl.data import make_dataset
from kmtl.data import read_table
from kmtl.data import split_frame
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.features import resolve_features
from kmtl.tasks import Task

# --- read_table --------------------------------------------------------------


def test_read_csv(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("x,color,y\n1.5,red,0\n,blue,1\n3.0,,\n")
    frame = read_table(path)
    assert list(frame.columns) == ["x", "color", "y"]
    assert len(frame) == 3
    np.testing.assert_array_equal(frame["x"].to_numpy(), [1.5, np.nan, 3.0])
    assert frame["color"].tolist()[:2] == ["red", "blue"]
    assert pd.isna(frame["color"].iloc[2]) and pd.isna(frame["y"].iloc[2])


def test_read_csv_gz(tmp_path):
    path = tmp_path / "train.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("a,b\n1,x\n2,y\n")
    frame = read_table(str(path))
    assert frame.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_read_parquet(tmp_path):
    original = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": ["x", "y", None]})
    for suffix in ("parquet", "pq"):
        path = tmp_path / f"train.{suffix}"
        original.to_parquet(path)
        pd.testing.assert_frame_equal(read_table(path), original)


def test_read_options_are_passed_to_pandas(tmp_path):
    path = tmp_path / "census.data"
    path.write_text("39, State-gov, ?\n50, Private, 50000+.\n")
    frame = read_table(path, header=None, names=["age", "worker", "income"],
                       skipinitialspace=True, na_values=["?"])
    assert list(frame.columns) == ["age", "worker", "income"]
    assert frame["age"].tolist() == [39, 50]
    # skipinitialspace strips the space after each comma.
    assert frame["worker"].tolist() == ["State-gov", "Private"]
    assert pd.isna(frame["income"].iloc[0])
    assert frame["income"].iloc[1] == "50000+."


def test_read_options_for_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_parquet(path)
    assert list(read_table(path, columns=["b"]).columns) == ["b"]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        read_table(path)


def test_header_only_file_has_no_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="header.csv' has no rows"):
        read_table(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found: .*nothing.csv"):
        read_table(tmp_path / "nothing.csv")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="is a directory; name a CSV or Parquet"):
        read_table(tmp_path)


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="Cannot read .*broken.parquet"):
        read_table(path)


def test_unparsable_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a\n1\n2,3,4\n")
    with pytest.raises(DataError, match="Cannot read .*ragged.csv"):
        read_table(path)


def test_unknown_read_option(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("a\n1\n")
    with pytest.raises(DataError, match="colour"):
        read_table(path, colour="red")


# --- combine_task_tables -----------------------------------------------------


@pytest.fixture
def task_tables():
    click = pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3],
                          "label": [1, 0, 1]})
    spend = pd.DataFrame({"id": [2, 3, 4], "x": [0.2, 0.3, 0.4],
                          "label": [5.0, 6.0, 7.0]})
    return {"click": click, "spend": spend}


def _nan_mask(frame, column):
    return frame[column].isna().tolist()


def test_combine_dict_without_key(task_tables):
    combined = combine_task_tables(task_tables)
    assert len(combined) == 6
    assert set(combined.columns) == {"id", "x", "click", "spend"}
    assert _nan_mask(combined, "click") == [False] * 3 + [True] * 3
    assert _nan_mask(combined, "spend") == [True] * 3 + [False] * 3
    assert combined["click"].iloc[:3].tolist() == [1, 0, 1]
    assert combined["spend"].iloc[3:].tolist() == [5.0, 6.0, 7.0]
    assert combined["x"].tolist() == [0.1, 0.2, 0.3, 0.2, 0.3, 0.4]


def test_combine_dict_with_key(task_tables):
    combined = combine_task_tables(task_tables, key="id").set_index("id")
    assert sorted(combined.index) == [1, 2, 3, 4]
    assert _nan_mask(combined.loc[[1, 2, 3, 4]], "click") == [False, False, False,
                                                               True]
    assert _nan_mask(combined.loc[[1, 2, 3, 4]], "spend") == [True, False, False,
                                                               False]
    assert combined.loc[2, "click"] == 0 and combined.loc[2, "spend"] == 5.0
    assert combined.loc[3, "click"] == 1 and combined.loc[3, "spend"] == 6.0
    assert combined.loc[4, "x"] == 0.4


def test_combine_long_table(task_tables):
    long = pd.concat([t.assign(task=name) for name, t in task_tables.items()],
                     ignore_index=True)
    combined = combine_task_tables(long)
    assert "task" not in combined.columns and "label" not in combined.columns
    assert len(combined) == 6
    assert _nan_mask(combined, "click") == [False] * 3 + [True] * 3
    assert _nan_mask(combined, "spend") == [True] * 3 + [False] * 3


def test_combine_long_table_with_key(task_tables):
    long = pd.concat([t.assign(task=name) for name, t in task_tables.items()],
                     ignore_index=True)
    combined = combine_task_tables(long, key="id").set_index("id").loc[[1, 2, 3, 4]]
    assert _nan_mask(combined, "click") == [False, False, False, True]
    assert _nan_mask(combined, "spend") == [True, False, False, False]
    assert combined["spend"].tolist()[1:] == [5.0, 6.0, 7.0]


def test_combine_custom_label_and_task_columns(task_tables):
    long = pd.concat([t.rename(columns={"label": "y"}).assign(target=name)
                      for name, t in task_tables.items()], ignore_index=True)
    combined = combine_task_tables(long, label_column="y", task_column="target")
    assert {"click", "spend"} <= set(combined.columns)


def test_combine_missing_label_column(task_tables):
    task_tables["spend"] = task_tables["spend"].rename(columns={"label": "amount"})
    with pytest.raises(DataError, match="task 'spend' has no 'label' column"):
        combine_task_tables(task_tables)


def test_combine_missing_task_column(task_tables):
    with pytest.raises(DataError, match="Column 'task'"):
        combine_task_tables(task_tables["click"])


def test_combine_missing_key(task_tables):
    with pytest.raises(DataError, match="no key column 'user'"):
        combine_task_tables(task_tables, key="user")


def test_combine_duplicate_label_for_one_key(task_tables):
    task_tables["click"] = pd.concat([task_tables["click"],
                                      task_tables["click"].iloc[:1]])
    with pytest.raises(DataError, match="two labels for the same task"):
        combine_task_tables(task_tables, key="id")


# --- split_frame -------------------------------------------------------------


@pytest.fixture
def split_data():
    rng = np.random.default_rng(0)
    rows = 1000
    positive = rng.random(rows) < 0.2
    label = np.where(positive, 1.0, 0.0)
    label[rng.random(rows) < 0.3] = np.nan  # 30% of rows unlabelled for `y`
    other = rng.normal(size=rows)
    other[rng.random(rows) < 0.5] = np.nan  # `z` labelled on about half
    frame = pd.DataFrame({"id": np.arange(rows), "y": label, "z": other})
    tasks = [Task("y", "binary"), Task("z", "regression")]
    return frame, tasks


@pytest.mark.parametrize("method", ["random", "per_task", "stratified"])
def test_split_sizes_and_disjoint(split_data, method):
    frame, tasks = split_data
    train, validation, test = split_frame(frame, tasks, method, validation=0.15,
                                          test=0.25, seed=3)
    assert (len(train), len(validation), len(test)) == (600, 150, 250)
    ids = [set(part["id"]) for part in (train, validation, test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert ids[0] | ids[1] | ids[2] == set(range(1000))
    for part in (train, validation, test):
        assert list(part.index) == list(range(len(part)))


def test_split_sizes_are_exact_for_decimal_fractions(split_data):
    # 0.1 + 0.2 is 0.30000000000000004 in floating point; 10% and 20% of 1000
    # rows must still be 100 and 200 rows, not 100 and 201.
    frame, tasks = split_data
    train, validation, test = split_frame(frame, tasks, "random", validation=0.1,
                                          test=0.2, seed=3)
    assert (len(train), len(validation), len(test)) == (700, 100, 200)


@pytest.mark.parametrize("method", ["random", "per_task", "stratified"])
def test_split_is_deterministic_for_seed(split_data, method):
    frame, tasks = split_data
    first = split_frame(frame, tasks, method, seed=7)
    second = split_frame(frame, tasks, method, seed=7)
    other = split_frame(frame, tasks, method, seed=8)
    for a, b in zip(first, second):
        pd.testing.assert_frame_equal(a, b)
    assert set(first[1]["id"]) != set(other[1]["id"])


def test_split_without_holdout(split_data):
    frame, tasks = split_data
    train, validation, test = split_frame(frame, tasks, validation=0.0, test=0.0)
    assert len(train) == 1000 and len(validation) == 0 and len(test) == 0


def test_split_without_test(split_data):
    frame, tasks = split_data
    train, validation, test = split_frame(frame, tasks, validation=0.25, test=0.0)
    assert (len(train), len(validation), len(test)) == (750, 250, 0)


def test_stratified_keeps_positive_rate(split_data):
    frame, tasks = split_data
    overall = (frame["y"] == 1).mean()
    labelled = frame["y"].notna().mean()
    for part in split_frame(frame, tasks, "stratified", validation=0.2, test=0.2,
                            seed=1):
        # Strata are exact up to rounding: 1 row in 200 is 0.005.
        assert abs((part["y"] == 1).mean() - overall) < 0.01
        assert abs(part["y"].notna().mean() - labelled) < 0.01


def test_per_task_keeps_labelled_share(split_data):
    frame, tasks = split_data
    shares = frame[["y", "z"]].notna().mean()
    for part in split_frame(frame, tasks, "per_task", validation=0.2, test=0.2,
                            seed=1):
        np.testing.assert_allclose(part[["y", "z"]].notna().mean(), shares,
                                   atol=0.01)


def test_split_default_method_is_stratified_as_in_the_config(split_data):
    frame, tasks = split_data
    default = split_frame(frame, tasks, seed=2)
    stratified = split_frame(frame, tasks, "stratified", seed=2)
    random = split_frame(frame, tasks, "random", seed=2)
    for a, b in zip(default, stratified):
        pd.testing.assert_frame_equal(a, b)
    assert set(default[1]["id"]) != set(random[1]["id"])


def test_split_unknown_method(split_data):
    frame, tasks = split_data
    with pytest.raises(ConfigError, match="unknown method 'kfold'"):
        split_frame(frame, tasks, "kfold")


@pytest.mark.parametrize("validation, test, match", [
    (1.0, 0.1, "split.validation"),
    (0.1, -0.1, "split.test"),
    (0.6, 0.5, r"validation \+ split.test must be < 1"),
])
def test_split_bad_fractions(split_data, validation, test, match):
    frame, tasks = split_data
    with pytest.raises(ConfigError, match=match):
        split_frame(frame, tasks, validation=validation, test=test)


# --- make_dataset ------------------------------------------------------------


@pytest.fixture
def fitted(tiny_frame):
    tasks = [
        Task("clicked", "binary").fit(tiny_frame),
        Task("kind", "multiclass").fit(tiny_frame),
        Task("price", "regression").fit(tiny_frame),
    ]
    features = resolve_features(tiny_frame, exclude=[t.name for t in tasks])
    return [f.fit(tiny_frame) for f in features], tasks


def test_encoded_batches_hold_the_blocks(tiny_frame, fitted):
    """The default batches hold each kind's encoded block: the numeric columns
    normalized with the training statistics (NaN kept) and the categorical
    lookup indices (vocabulary red, blue, green by count; 0 is unseen)."""
    features, tasks = fitted
    batches = list(make_dataset(tiny_frame, features, tasks, batch_size=4))
    x, y, weight = batches[0]
    assert set(x) == {"encoded:numeric", "encoded:categorical"}
    numeric, categorical = x["encoded:numeric"], x["encoded:categorical"]
    assert numeric.shape == (4, 2) and numeric.dtype == tf.float32
    assert categorical.shape == (4, 1) and categorical.dtype == tf.int64
    columns = tiny_frame[["x1", "x2"]].to_numpy()
    expected = (columns - np.nanmean(columns, axis=0)) / np.sqrt(
        np.nanvar(columns, axis=0))
    np.testing.assert_allclose(numeric.numpy(), expected[:4], rtol=1e-6)
    assert np.isnan(numeric.numpy()[2, 0])
    assert categorical.numpy()[:, 0].tolist() == [1, 2, 1, 3]
    np.testing.assert_array_equal(y["kind"].numpy(), [1, 0, 2, 0])
    np.testing.assert_array_equal(weight["clicked"].numpy(), [1, 1, 0, 1])
    assert batches[1][0]["encoded:numeric"].shape == (2, 2)


def test_batch_shapes_and_dtypes(tiny_frame, fitted):
    features, tasks = fitted
    batches = list(make_dataset(tiny_frame, features, tasks, batch_size=4,
                                encoded=False))
    assert len(batches) == 2
    x, y, weight = batches[0]
    assert set(x) == {"x1", "x2", "color"}
    assert x["x1"].shape == (4, 1) and x["x1"].dtype == tf.float32
    assert x["x2"].shape == (4, 1) and x["x2"].dtype == tf.float32
    assert x["color"].shape == (4, 1) and x["color"].dtype == tf.string
    assert y["clicked"].shape == (4, 1) and y["clicked"].dtype == tf.float32
    assert y["kind"].shape == (4,) and y["kind"].dtype == tf.int32
    assert y["price"].shape == (4, 1) and y["price"].dtype == tf.float32
    for name in ("clicked", "kind", "price"):
        assert weight[name].shape == (4,) and weight[name].dtype == tf.float32
    assert np.isnan(x["x1"].numpy()[2, 0])
    assert x["color"].numpy()[:, 0].tolist() == [b"red", b"blue", b"red", b"green"]
    np.testing.assert_array_equal(weight["clicked"].numpy(), [1, 1, 0, 1])
    np.testing.assert_array_equal(y["kind"].numpy(), [1, 0, 2, 0])
    np.testing.assert_array_equal(y["price"].numpy()[:, 0], [10, 20, 30, 40])
    assert batches[1][0]["x1"].shape == (2, 1)  # the remainder batch


def test_features_only_dataset(tiny_frame, fitted):
    features, _ = fitted
    batch = next(iter(make_dataset(tiny_frame, features, batch_size=6,
                                   encoded=False)))
    assert isinstance(batch, dict) and set(batch) == {"x1", "x2", "color"}
    batch = next(iter(make_dataset(tiny_frame, features, batch_size=6)))
    assert set(batch) == {"encoded:numeric", "encoded:categorical"}


def test_drop_remainder(tiny_frame, fitted):
    features, tasks = fitted
    dataset = make_dataset(tiny_frame, features, tasks, batch_size=4,
                           drop_remainder=True)
    assert dataset.cardinality().numpy() == 1
    assert len(list(dataset)) == 1


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, None])
def test_bad_batch_size(tiny_frame, fitted, batch_size):
    features, _ = fitted
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(tiny_frame, features, batch_size=batch_size)


@pytest.fixture
def numbered():
    frame = pd.DataFrame({"row": np.arange(23.0), "y": np.arange(23.0) % 2})
    return (frame, [Feature("row", "numeric").fit(frame)],
            [Task("y", "binary").fit(frame)])


def _rows(x):
    """The row numbers of a batch of the `numbered` frame: the raw `row`
    feature, or its encoded block (rows 0..22 normalized) mapped back."""
    if "row" in x:
        return x["row"].numpy()[:, 0]
    rows = np.arange(23.0)
    return x["encoded:numeric"].numpy()[:, 0] * rows.std() + rows.mean()


def _epoch(iterator_source):
    """Rows of one pass, batch by batch."""
    return [np.rint(_rows(x)).astype(int).tolist() for x, _, _ in iterator_source]


def test_encoded_and_raw_batches_take_the_same_rows(numbered):
    frame, features, tasks = numbered
    encoded = make_dataset(frame, features, tasks, batch_size=5, shuffle=True,
                           seed=4)
    raw = make_dataset(frame, features, tasks, batch_size=5, shuffle=True,
                       seed=4, encoded=False)
    assert _epoch(encoded) == _epoch(raw)


def test_shuffle_covers_every_row_once_per_epoch(numbered):
    frame, features, tasks = numbered
    dataset = make_dataset(frame, features, tasks, batch_size=5, shuffle=True,
                           seed=4)
    assert dataset.cardinality().numpy() == 5
    for _ in range(2):
        batches = _epoch(dataset)
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
        rows = [r for batch in batches for r in batch]
        assert sorted(rows) == list(range(23))


def test_shuffle_labels_stay_with_their_rows(numbered):
    frame, features, tasks = numbered
    for x, y, _ in make_dataset(frame, features, tasks, batch_size=5, shuffle=True,
                                seed=4):
        rows = np.rint(_rows(x))
        np.testing.assert_array_equal(y["y"].numpy()[:, 0], rows % 2)


def test_same_seed_same_order_and_epochs_differ(numbered):
    frame, features, tasks = numbered
    first = make_dataset(frame, features, tasks, batch_size=5, shuffle=True,
                         seed=4)
    second = make_dataset(frame, features, tasks, batch_size=5, shuffle=True,
                          seed=4)
    epoch_1 = _epoch(first)
    epoch_2 = _epoch(first)
    assert epoch_1 == _epoch(second)
    assert epoch_2 == _epoch(second)
    assert epoch_1 != epoch_2
    assert epoch_1 != [list(range(i, min(i + 5, 23))) for i in range(0, 23, 5)]
    other = make_dataset(frame, features, tasks, batch_size=5, shuffle=True, seed=5)
    assert _epoch(other) != epoch_1


def test_no_shuffle_keeps_order(numbered):
    frame, features, tasks = numbered
    dataset = make_dataset(frame, features, tasks, batch_size=5)
    in_order = [list(range(i, min(i + 5, 23))) for i in range(0, 23, 5)]
    assert _epoch(dataset) == in_order
    assert _epoch(dataset) == in_order


def test_text_in_numeric_feature_names_column_and_value(tiny_frame, fitted):
    features, tasks = fitted
    frame = tiny_frame.copy()
    frame["x2"] = frame["x2"].astype(object)
    frame.loc[3, "x2"] = "n/a"
    with pytest.raises(DataError, match=r"Feature 'x2' is numeric but row 3 holds "
                                        r"'n/a'"):
        make_dataset(frame, features, tasks)


@pytest.mark.parametrize("column", ["x1", "color"])
def test_missing_feature_column(tiny_frame, fitted, column):
    features, tasks = fitted
    with pytest.raises(DataError, match=f"Feature '{column}' not found"):
        make_dataset(tiny_frame.drop(columns=column), features, tasks)


def test_string_features_match_their_converted_text():
    """Batches carry the same text the vocabulary was fitted on: missing values
    become "", integral float codes lose their ".0"."""
    frame = pd.DataFrame({"city": ["Oslo", None, "Lima", "Oslo"],
                          "code": [3.0, np.nan, 12.0, 3.0]})
    features = [Feature("city", "categorical").fit(frame),
                Feature("code", "categorical").fit(frame)]
    batch = next(iter(make_dataset(frame, features, batch_size=4,
                                   encoded=False)))
    assert batch["city"].numpy()[:, 0].tolist() == [b"Oslo", b"", b"Lima", b"Oslo"]
    assert batch["code"].numpy()[:, 0].tolist() == [b"3", b"", b"12", b"3"]
    assert set(features[1].vocabulary) == {"3", "", "12"}


def test_unlabelled_rows_get_weight_zero_and_placeholder(tiny_frame, fitted):
    features, tasks = fitted
    frame = tiny_frame.copy()
    frame.loc[[0, 5], "kind"] = None
    _, y, weight = next(iter(make_dataset(frame, features, tasks, batch_size=6)))
    np.testing.assert_array_equal(weight["kind"].numpy(), [0, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(y["kind"].numpy(), [0, 0, 2, 0, 1, 0])


def test_a_single_row_of_a_class_is_split_without_error():
    # A class seen once (a label error, a new species) is one rare row: it
    # cannot be stratified alone, so it joins the largest stratum.
    frame = kmtl.datasets.load_penguins()
    frame.loc[0, "species"] = "Emperor"
    tasks = [kmtl.Task("species", "multiclass")]
    parts = split_frame(frame, tasks, "stratified", validation=0.15, test=0.15)
    assert [len(p) for p in parts] == [240, 52, 52]
    assert sum((p["species"] == "Emperor").sum() for p in parts) == 1


def test_too_few_held_out_rows_to_stratify_is_a_data_error():
    frame = pd.DataFrame({"x": np.arange(30.0), "k": list("abcdefghij") * 3})
    with pytest.raises(DataError, match=r"split\.method 'stratified' cannot "
                                        r"stratify 30 rows into 3 validation and "
                                        r"3 test rows: .* Use split\.method: "
                                        r"random"):
        split_frame(frame, [kmtl.Task("k", "multiclass")], "stratified",
                    validation=0.1, test=0.1)
    assert [len(p) for p in split_frame(frame, [kmtl.Task("k", "multiclass")],
                                        "random", 0.1, 0.1)] == [24, 3, 3]


def _timeline(rows=100):
    return pd.DataFrame({"t": np.arange(rows)[::-1].astype(float),
                         "user": np.repeat(np.arange(rows // 5), 5),
                         "y": np.arange(rows) % 2})


def test_ordered_split_keeps_the_latest_rows_for_validation_and_test():
    frame = _timeline()
    tasks = [Task("y", "binary")]
    train, validation, test = split_frame(frame, tasks, "ordered", validation=0.1,
                                          test=0.2, order_by="t")
    assert [len(p) for p in (train, validation, test)] == [70, 10, 20]
    # Each part keeps the table's row order; by `t` they follow one another.
    assert sorted(train["t"]) == list(range(70))
    assert sorted(validation["t"]) == list(range(70, 80))
    assert sorted(test["t"]) == list(range(80, 100))
    # Without order_by: the table's own order (here t descends row by row).
    train, validation, test = split_frame(frame, tasks, "ordered", 0.1, 0.2)
    assert train["t"].min() == 30 and validation["t"].tolist() == list(
        range(29, 19, -1)) and test["t"].max() == 19


def test_group_split_keeps_every_group_on_one_side():
    frame = _timeline()
    parts = split_frame(frame, [Task("y", "binary")], "group", validation=0.2,
                        test=0.2, group_by="user", seed=3)
    users = [set(p["user"]) for p in parts]
    assert [len(u) for u in users] == [12, 4, 4]  # fractions of the 20 groups
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    assert [len(p) for p in parts] == [60, 20, 20]


@pytest.mark.parametrize("method, options, error, message", [
    ("group", {}, ConfigError, r"split\.group_by names the column"),
    ("random", {"order_by": "t"}, ConfigError, r"order_by applies to split\.method "
                                               r"'ordered' only"),
    ("ordered", {"order_by": "when"}, DataError, r"split\.order_by: column 'when' "
                                                 r"not found"),
    ("group", {"group_by": "y"}, DataError, r"'y' has 2 distinct value\(s\)"),
])
def test_ordered_and_group_splits_refuse_bad_columns(method, options, error,
                                                     message):
    with pytest.raises(error, match=message):
        split_frame(_timeline(), [Task("y", "binary")], method, 0.1, 0.1,
                    **options)


def test_missing_order_values_are_a_data_error():
    frame = _timeline()
    frame.loc[3, "t"] = np.nan
    with pytest.raises(DataError, match=r"split\.order_by: column 't' has 1 "
                                        r"missing value"):
        split_frame(frame, [Task("y", "binary")], "ordered", 0.1, 0.1,
                    order_by="t")


def test_cached_dataset_yields_the_same_batches_and_refuses_shuffle(numbered):
    frame, features, tasks = numbered
    plain = make_dataset(frame, features, tasks, batch_size=5)
    cached = make_dataset(frame, features, tasks, batch_size=5, cache=True)
    assert _epoch(cached) == _epoch(plain) == _epoch(cached)
    with pytest.raises(ValueError, match="cannot be combined with shuffle"):
        make_dataset(frame, features, tasks, batch_size=5, shuffle=True, cache=True)
