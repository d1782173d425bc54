"""Tests for `kmtl.data.streaming` and `data.streaming` runs: tables read in
chunks, fitted on a sample, split by a hash rule."""

import json
import os
import re

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from kmtl.data import SplitRule
from kmtl.data import StreamedSplit
from kmtl.data import TableSource
from kmtl.data import fit_sample
from kmtl.data import make_dataset
from kmtl.data import read_table
from kmtl.data import stream_dataset
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.runs.config import parse_config
from kmtl.runs.data import load_stored_splits
from kmtl.runs.data import prepare
from kmtl.runs.data import prepare_data
from kmtl.runs.data import split_datasets
from kmtl.runs.training import train

ROWS = 300
WIDTH = "taille (cm) à l'épaule"
CATEGORY = "café"
TASKS = [{"name": "price", "type": "regression", "target": "price"},
         {"name": "sold", "type": "binary", "target": "sold"}]


def _table(rows=ROWS, seed=0):
    """A table with a column name with spaces and accents, a categorical, a
    row id and two tasks with missing labels."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": np.arange(rows, dtype="float64"),
        WIDTH: rng.normal(50, 10, rows).round(3),
        CATEGORY: rng.choice(["noir", "crème", "lait"], rows),
        "price": rng.normal(size=rows).round(3),
        "sold": rng.integers(0, 2, rows).astype("float64"),
    })
    frame.loc[::5, "price"] = np.nan
    frame.loc[::7, "sold"] = np.nan
    frame.loc[3, WIDTH] = np.nan
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """`{format: path}`: the same table as a CSV file and as a folder of two
    Parquet files (several row groups each)."""
    root = tmp_path_factory.mktemp("tables")
    frame = _table()
    csv = root / "table.csv"
    frame.to_csv(csv, index=False)
    folder = root / "parquet"
    folder.mkdir()
    frame.iloc[:130].to_parquet(folder / "part-0.parquet", row_group_size=50)
    frame.iloc[130:].to_parquet(folder / "part-1.parquet", row_group_size=50)
    return {"csv": str(csv), "parquet": str(folder)}


def _fitted(frame):
    config = parse_config({"data": {"train": "x"}, "tasks": TASKS,
                           "features": {"exclude": ["id"]}})
    from kmtl.runs.data import build_tasks

    tasks = build_tasks(config)
    features = prepare(config, frame, tasks)
    return features, tasks


def _batches(dataset):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset]


def _assert_same_batches(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        tf.nest.assert_same_structure(a, b)
        for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


# --- Reading in chunks -------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_chunks_read_the_table_in_order(files, kind):
    source = TableSource(files[kind], chunk_rows=37)
    chunks = list(source.chunks([WIDTH, CATEGORY, "id"]))
    assert max(len(c) for _, c in chunks) <= 37
    assert [first for first, _ in chunks] == list(
        np.cumsum([0] + [len(c) for _, c in chunks[:-1]]))
    whole = pd.concat([c for _, c in chunks], ignore_index=True)
    expected = _table()[[WIDTH, CATEGORY, "id"]]
    pd.testing.assert_frame_equal(whole, expected)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_streamed_batches_equal_make_dataset(files, kind):
    # Fitted on the same frame, unshuffled: value for value, batch for batch,
    # although chunks (37 rows) and batches (16) do not line up.
    frame = read_table(files["csv"])
    features, tasks = _fitted(frame)
    split = StreamedSplit(TableSource(files[kind], chunk_rows=37), rows=ROWS)
    streamed = stream_dataset(split, features, tasks, batch_size=16)
    assert int(streamed.cardinality()) == -(-ROWS // 16)
    expected = make_dataset(frame, features, tasks, batch_size=16)
    assert streamed.element_spec == expected.element_spec
    _assert_same_batches(_batches(streamed), _batches(expected))
    # Features only, as for predictions.
    _assert_same_batches(_batches(stream_dataset(split, features, None, 64)),
                         _batches(make_dataset(frame, features, None, 64)))


def _ids(batches, features, frame):
    """The row ids of the streamed rows, recovered from the encoded `id`
    column (a numeric feature here)."""
    names = [f.name for f in features if f.kind == "numeric"]
    column = names.index("id")
    encoded = np.concatenate([b[0]["encoded:numeric"][:, column] for b in batches])
    reference = make_dataset(frame, features, None, len(frame))
    table = next(iter(reference))["encoded:numeric"].numpy()[:, column]
    lookup = {value: i for i, value in enumerate(table)}
    return [lookup[value] for value in encoded]


def test_shuffled_epochs_see_every_row_once(files):
    frame = read_table(files["parquet"] + "/part-0.parquet")
    frame = pd.concat([frame, read_table(files["parquet"] + "/part-1.parquet")],
                      ignore_index=True)
    config = parse_config({"data": {"train": "x"}, "tasks": TASKS})
    from kmtl.runs.data import build_tasks

    tasks = build_tasks(config)
    features = prepare(config, frame, tasks)
    split = StreamedSplit(TableSource(files["parquet"], chunk_rows=40), rows=ROWS,
                          shuffle_buffer=64)
    dataset = stream_dataset(split, features, tasks, batch_size=32, shuffle=True,
                             seed=3)
    first, second = _batches(dataset), _batches(dataset)
    first_ids = _ids(first, features, frame)
    second_ids = _ids(second, features, frame)
    assert sorted(first_ids) == list(range(ROWS))
    assert sorted(second_ids) == list(range(ROWS))
    assert first_ids != list(range(ROWS)) and first_ids != second_ids
    # The order is a function of (seed, epoch): a new dataset repeats it, and
    # one resumed after an epoch starts with the second epoch's order.
    again = stream_dataset(split, features, tasks, 32, shuffle=True, seed=3)
    assert _ids(_batches(again), features, frame) == first_ids
    resumed = stream_dataset(split, features, tasks, 32, shuffle=True, seed=3,
                             first_epoch=1)
    assert _ids(_batches(resumed), features, frame) == second_ids
    # The window bounds how far a row moves: with 64 rows, never more than
    # one window plus one chunk ahead of its place.
    assert max(i - pos for pos, i in enumerate(first_ids)) < 64 + 40 + 32


# --- The split rule ----------------------------------------------------------


def test_split_rule_is_deterministic_disjoint_and_chunk_independent():
    rule = SplitRule(validation=0.1, test=0.2, seed=5)
    frame = pd.DataFrame(index=range(20_000))
    whole = rule.parts(frame, first_row=0)
    pieces = np.concatenate([rule.parts(frame.iloc[i:i + 777], first_row=i)
                             for i in range(0, 20_000, 777)])
    np.testing.assert_array_equal(whole, pieces)
    np.testing.assert_array_equal(whole, SplitRule(0.1, 0.2, seed=5).parts(frame, 0))
    assert set(np.unique(whole)) == {0, 1, 2}
    shares = np.bincount(whole) / len(whole)
    np.testing.assert_allclose(shares, [0.7, 0.1, 0.2], atol=0.01)
    # Another seed, another choice of rows, the same fractions.
    other = SplitRule(0.1, 0.2, seed=6).parts(frame, 0)
    assert (other != whole).mean() > 0.3
    # Growing a fraction only moves rows out of training: validation rows
    # stay validation rows.
    larger = SplitRule(0.15, 0.2, seed=5).parts(frame, 0)
    assert np.all(larger[whole == 1] == 1)


def test_split_rule_by_group_keeps_groups_together():
    frame = pd.DataFrame({"user": np.repeat([f"u{i}" for i in range(500)], 4)})
    parts = SplitRule(0.2, 0.2, seed=0, by="user").parts(frame, first_row=0)
    per_user = pd.Series(parts).groupby(frame["user"]).nunique()
    assert per_user.max() == 1
    assert 0.1 < (parts == 1).mean() < 0.3


def test_split_rule_refuses_bad_fractions():
    with pytest.raises(ConfigError, match="validation=0.6, test=0.5"):
        SplitRule(0.6, 0.5)


def test_streamed_splits_cover_the_table_once(files):
    rule = SplitRule(0.2, 0.1, seed=1)
    source = TableSource(files["parquet"], chunk_rows=33)
    ids = {part: np.concatenate([f["id"].to_numpy() for f in
                                 StreamedSplit(source, part, rule).frames(["id"])])
           for part in ("train", "validation", "test")}
    together = np.concatenate(list(ids.values()))
    assert sorted(together) == list(range(ROWS))
    assert all(len(v) for v in ids.values())


# --- The fit sample ----------------------------------------------------------


def test_fit_sample_is_uniform_deterministic_and_training_rows_only(tmp_path):
    # A table sorted by x: the first rows would be the smallest values.
    rows = 20_000
    frame = pd.DataFrame({"x": np.arange(rows, dtype="float64")})
    path = tmp_path / "sorted.parquet"
    frame.to_parquet(path, row_group_size=1000)
    source = TableSource(path, chunk_rows=1000)
    rule = SplitRule(0.1, 0.1, seed=0)
    sample, counts = fit_sample(source, rows=2000, seed=0, rule=rule)
    assert len(sample) == 2000
    assert counts == {"train": int((rule.parts(frame, 0) == 0).sum()),
                      "validation": int((rule.parts(frame, 0) == 1).sum()),
                      "test": int((rule.parts(frame, 0) == 2).sum())}
    assert sum(counts.values()) == rows
    held_out = np.flatnonzero(rule.parts(frame, 0) != 0)
    assert not set(sample["x"].astype(int)) & set(held_out)
    assert sample["x"].is_monotonic_increasing and sample["x"].is_unique
    # Uniform over the table: mean and spread of the whole column (a first-N
    # sample would have mean 999.5).
    assert abs(sample["x"].mean() - rows / 2) < 400
    assert sample["x"].min() < 200 and sample["x"].max() > rows - 200
    again, _ = fit_sample(source, rows=2000, seed=0, rule=rule)
    pd.testing.assert_frame_equal(sample, again)
    other, _ = fit_sample(source, rows=2000, seed=1, rule=rule)
    assert not sample.equals(other)
    whole, _ = fit_sample(path, rows=10**6)
    pd.testing.assert_frame_equal(whole, frame)


def test_category_outside_the_sample_is_out_of_vocabulary(tmp_path):
    frame = _table(rows=400)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    source = TableSource(path, chunk_rows=64)
    sample, _ = fit_sample(source, rows=100, seed=0)
    # The sample's rows depend on the seed and the row positions only: a
    # row left out keeps being left out when its values change.
    left_out = sorted(set(range(400)) - set(sample["id"].astype(int)))[-1]
    kept = int(sample["id"].iloc[-1])
    frame.loc[left_out, CATEGORY] = "déca"
    frame.to_parquet(path)
    source = TableSource(path, chunk_rows=64)
    sample, _ = fit_sample(source, rows=100, seed=0)
    assert "déca" not in set(sample[CATEGORY])
    features, tasks = _fitted(sample)
    feature = next(f for f in features if f.name == CATEGORY)
    batches = _batches(stream_dataset(StreamedSplit(source, rows=400), features,
                                      tasks, 400))
    names = [f.name for f in features if f.kind == "categorical"]
    codes = batches[0][0]["encoded:categorical"][:, names.index(CATEGORY)]
    unseen = feature.indices(pd.DataFrame({CATEGORY: ["never in any table"]}))
    assert codes[left_out] == unseen[0]
    assert codes[kept] != unseen[0]


# --- Errors ------------------------------------------------------------------


def test_bad_path_is_a_data_error_naming_it(tmp_path):
    missing = str(tmp_path / "nope.parquet")
    with pytest.raises(DataError, match="nope.parquet"):
        TableSource(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        TableSource(tmp_path / "empty")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="broken.parquet"):
        TableSource(broken)


def test_missing_column_is_a_data_error_naming_it(files):
    source = TableSource(files["parquet"])
    with pytest.raises(DataError, match=r"\['weight'\] not found"):
        next(source.chunks(["id", "weight"]))


def test_unsupported_csv_option_is_a_config_error(files):
    with pytest.raises(ConfigError, match="skipinitialspace"):
        TableSource(files["csv"], {"skipinitialspace": True})
    with pytest.raises(ConfigError, match="Parquet"):
        TableSource(files["parquet"], {"sep": ";"})


def _config(train, **data):
    return {"name": "streamed", "data": {"train": train,
                                         "streaming": {"chunk_rows": 64,
                                                       "fit_rows": 150},
                                         "split": {"method": "random"}, **data},
            "tasks": TASKS, "features": {"exclude": ["id"]},
            "model": {"architecture": "shared_bottom"},
            "training": {"epochs": 2, "batch_size": 32, "verbose": 0}}


@pytest.mark.parametrize("key, value, expected", [
    ("chunk_size", 10, r"Unknown config key\(s\) \['chunk_size'\] in "
                       r"`data.streaming`"),
    ("chunk_rows", 0, "data.streaming.chunk_rows must be a positive integer"),
    ("validate_first", "yes", "data.streaming.validate_first must be true or "
                              "false"),
])
def test_bad_streaming_key_is_a_config_error(key, value, expected):
    config = _config("t.parquet")
    config["data"]["streaming"][key] = value
    with pytest.raises(ConfigError, match=expected):
        parse_config(config)


def test_streaming_refuses_what_it_cannot_follow():
    config = _config("t.parquet")
    config["data"]["split"] = {"method": "ordered"}
    with pytest.raises(ConfigError, match="method 'ordered' cannot"):
        parse_config(config)
    config = _config(None, dataset="penguins")
    with pytest.raises(ConfigError, match="does not apply to data.dataset"):
        parse_config(config)


def test_missing_target_column_names_it(files):
    config = _config(files["parquet"])
    config["tasks"] = TASKS + [{"name": "w", "type": "regression",
                                "target": "weight"}]
    with pytest.raises(DataError, match="weight"):
        prepare_data(config)


def test_bad_value_is_found_before_training(tmp_path):
    frame = _table()
    frame.loc[250, WIDTH] = np.inf
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=re.escape(WIDTH)):
        prepare_data(_config(str(tmp_path / "t.parquet")), log=lambda line: None)
    lines = []
    config = _config(str(tmp_path / "t.parquet"), non_finite="drop")
    data = prepare_data(config, log=lines.append)
    assert sum(len(data.__dict__[s] or []) for s in ("train", "validation",
                                                     "test")) == ROWS - 1
    assert any(f"{WIDTH!r} 1" in line and "dropped" in line for line in lines)


def test_bad_value_found_while_training_is_the_data_error(tmp_path):
    # Without the first pass, the chunk holding the bad value fails during
    # `fit`: `train` raises its DataError (naming the column), not tf.data's
    # wrapper, and exports nothing.
    frame = _table()
    frame.loc[250, WIDTH] = np.inf
    frame.to_parquet(tmp_path / "t.parquet")
    config = _config(str(tmp_path / "t.parquet"))
    config["data"]["streaming"]["validate_first"] = False
    lines = []
    with pytest.raises(DataError, match=re.escape(WIDTH)):
        train(config, output_dir=str(tmp_path / "runs"),
              export_root=str(tmp_path / "exports"), log=lines.append)
    assert any(line.startswith("Training streamed") for line in lines), lines
    assert not (tmp_path / "exports").exists()


# --- Runs ---------------------------------------------------------------------


def test_prepare_data_streams_every_split(files):
    data = prepare_data(_config(files["csv"]), log=lambda line: None)
    assert len(data.train) + len(data.validation) + len(data.test) == ROWS
    rule = SplitRule(0.1, 0.1, seed=0)
    expected = np.bincount(rule.parts(pd.DataFrame(index=range(ROWS)), 0))
    assert [len(data.train), len(data.validation), len(data.test)] == list(expected)
    assert data.split["streaming"]["validation"] == 0.1
    assert data.split["source"]["rows"] == ROWS
    assert len(data.train.fitted_on) == 150
    assert len(data.train.sample(40, random_state=0)) == 40
    rows = sum(len(b[2]["price"]) for b in data.train_dataset(seed=0))
    assert rows == len(data.train)
    held = sum(len(b[2]["price"]) for b in data.held_out["validation"])
    assert held == len(data.validation)


def test_streamed_held_out_files(files, tmp_path):
    frame = _table(rows=80, seed=1)
    frame.to_parquet(tmp_path / "valid.parquet")
    frame.iloc[:50].to_csv(tmp_path / "test.csv", index=False)
    config = _config(files["parquet"], validation=str(tmp_path / "valid.parquet"),
                     test=str(tmp_path / "test.csv"))
    with pytest.raises(ConfigError, match="read_options"):
        prepare_data({**config, "data": {**config["data"],
                                         "read_options": {"sep": ";"}}})
    data = prepare_data(config, log=lambda line: None)
    assert (len(data.train), len(data.validation), len(data.test)) == (ROWS, 80, 50)
    assert data.split["streaming"] is None
    assert data.split["test"]["source"]["files"][0]["name"] == "test.csv"


def test_train_end_to_end_with_streaming(files, tmp_path):
    lines = []
    config = _config(files["parquet"])
    result = train(config, output_dir=str(tmp_path / "runs"),
                   export_root=str(tmp_path / "exports"), log=lines.append)
    assert any("Streaming" in line for line in lines)
    assert result["export_dir"] and os.path.isdir(result["export_dir"])
    assert len(result["history"]["loss"]) == 2
    metrics = result["metrics"]
    assert set(metrics) == {"validation", "test"}
    assert np.isfinite(metrics["validation"]["price"]["loss"])
    with open(os.path.join(result["run_dir"], "split.json")) as handle:
        record = json.load(handle)
    assert record["streaming"]["seed"] == 0
    assert record["source"]["path"] == files["parquet"]
    assert record["train"]["rows"] + record["validation"]["rows"] + record[
        "test"]["rows"] == ROWS
    # kmtl evaluate's path: the stored rule gives the same held-out rows.
    stored = load_stored_splits(parse_config(config), record)
    assert [len(s) for s in stored] == [record[s]["rows"] for s in
                                        ("train", "validation", "test")]
    from kmtl.runs.run_dir import RunDir

    model = RunDir.open(result["run_dir"]).load_model()
    again = split_datasets({"validation": stored[1]}, model.features, model.tasks,
                           32)
    values = model.evaluate(again["validation"], return_dict=True, verbose=0)
    np.testing.assert_allclose(values["price_loss"],
                               metrics["validation"]["price"]["loss"], rtol=1e-4)


def test_csv_read_options_and_a_type_change_mid_file(tmp_path):
    path = tmp_path / "semicolon.csv"
    rows = ["x;color;y"] + [f"{i};c{i % 3};{'?' if i % 4 == 0 else i}"
                            for i in range(5000)]
    path.write_text("\n".join(rows) + "\n")
    source = TableSource(path, {"sep": ";", "na_values": ["?"]}, chunk_rows=700)
    whole = pd.concat([c for _, c in source.chunks()], ignore_index=True)
    expected = pd.read_csv(path, sep=";", na_values=["?"])
    pd.testing.assert_frame_equal(whole, expected)
    assert max(len(c) for _, c in source.chunks()) == 700
    # A value that does not fit the type read from the first block (4 MB,
    # where x is an integer) is a DataError naming the file, not a raw Arrow
    # error.
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n" + "1,2\n" * 1_100_000 + "one,2\n")
    with pytest.raises(DataError, match=r"bad\.csv.*convert the table to Parquet"):
        for _ in TableSource(bad).chunks():
            pass
