"""Tests for `kmtl.runs.run_dir.RunDir` and the recorded split of
`kmtl.runs.data`: what a run directory stores, read back."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.runs.config import parse_config
from kmtl.runs.data import content_hash
from kmtl.runs.data import load_stored_splits
from kmtl.runs.data import prepare_data
from kmtl.runs.data import split_data
from kmtl.runs.run_dir import RunDir
from kmtl.runs.training import prepare_run


@pytest.fixture
def table(tmp_path):
    """20 rows: numeric `x`, integer `n`, text `color`, a binary label `y`
    (alternating, so a stratified split keeps both labels); written to CSV."""
    frame = pd.DataFrame({
        "x": np.linspace(0.0, 1.9, 20),
        "n": np.arange(20) % 3,
        "color": ["red", "blue", "green", "red"] * 5,
        "y": [0, 1] * 10,
    })
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return frame, path


def _config(path, **data):
    return parse_config({
        "name": "table",
        "data": {"train": str(path), "split": {"validation": 0.2, "test": 0.2,
                                               "seed": 3}, **data},
        "tasks": [{"name": "y", "type": "binary"}],
    })


def test_split_record_holds_the_row_positions(table):
    frame, path = table
    (train, validation, test), record = split_data(_config(path))
    assert [record[s]["rows"] for s in ("train", "validation", "test")] == [12, 4, 4]
    positions = [record[s]["indices"] for s in ("train", "validation", "test")]
    assert sorted(sum(positions, [])) == list(range(20))
    for part, rows in zip((train, validation, test), positions):
        assert rows == sorted(rows)
        pd.testing.assert_frame_equal(part, frame.iloc[rows].reset_index(drop=True))
        # Stratified: each held-out split has both labels, two of each.
    assert sorted(validation["y"]) == sorted(test["y"]) == [0, 0, 1, 1]
    assert record["source"] == {"rows": 20, "sha256": content_hash(frame)}


def test_stored_split_gives_the_same_rows_whatever_the_seed(table):
    _, path = table
    frames, record = split_data(_config(path))
    other_seed = _config(path, split={"validation": 0.2, "test": 0.2, "seed": 4})
    assert not split_data(other_seed)[0][2].equals(frames[2])
    for stored, original in zip(load_stored_splits(other_seed, record), frames):
        pd.testing.assert_frame_equal(stored, original)


def test_a_changed_table_is_refused(table):
    frame, path = table
    config = _config(path)
    _, record = split_data(config)
    frame.loc[7, "x"] = 100.0
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"The training table differs from the one "
                                        r"the run was trained on.*kmtl evaluate "
                                        r"RUN_DIR DATA"):
        load_stored_splits(config, record)


def test_a_split_from_its_own_file_is_stored_as_a_hash(table, tmp_path):
    frame, path = table
    own = frame.iloc[:5]
    own.to_csv(tmp_path / "validation.csv", index=False)
    config = _config(path, validation=str(tmp_path / "validation.csv"))
    (train, validation, test), record = split_data(config)
    assert record["validation"] == {"rows": 5, "sha256": content_hash(validation)}
    assert len(record["train"]["indices"]) == 16 and len(test) == 4
    pd.testing.assert_frame_equal(load_stored_splits(config, record)[1], validation)

    own.assign(x=own["x"] + 1).to_csv(tmp_path / "validation.csv", index=False)
    with pytest.raises(DataError, match="The validation data differs"):
        load_stored_splits(config, record)


def test_content_hash_depends_on_values_and_columns_not_index():
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None]})
    assert content_hash(frame) == content_hash(frame.set_axis([5, 6]))
    assert content_hash(frame) != content_hash(frame.rename(columns={"b": "c"}))
    assert content_hash(frame) != content_hash(frame.fillna({"a": 0.0}))


def test_run_dir_round_trip(table, tmp_path):
    """config.yaml holds the fitted tasks and the features chosen automatically
    (by kind); split.json and metrics.json read back as written."""
    _, path = table
    config, data = prepare_run(_config(path))
    run = RunDir.create(tmp_path / "runs", config.name)
    assert os.path.dirname(run.path) == str(tmp_path / "runs")
    assert os.path.basename(run.path).startswith("table-")
    written = run.write_config(config, data.tasks, data.features)
    run.write_split(data.split)
    metrics = {"test": {"y": {"loss": 0.5, "auc": 0.75}}}
    run.write_metrics(metrics)

    saved = yaml.safe_load(open(run.file("config.yaml")))
    assert saved == written
    assert saved["features"]["numeric"] == ["x", "n"]
    assert saved["features"]["categorical"] == ["color"]
    assert saved["tasks"] == [t.get_config() for t in data.tasks]
    assert saved["tasks"][0]["positive"] == 1

    read = RunDir(run.path).read_config()
    assert read.to_dict() == saved
    assert read.features.numeric == ["x", "n"]
    assert read.training.epochs == config.training.epochs
    assert RunDir(run.path).read_split() == data.split
    assert RunDir(run.path).read_metrics() == metrics
    # The stored config, prepared again, uses the same features.
    again = prepare_data(read)
    assert [(f.name, f.kind) for f in again.features] == [
        (f.name, f.kind) for f in data.features]


def test_create_never_reuses_a_directory(tmp_path):
    first = RunDir.create(tmp_path, "run")
    second = RunDir.create(tmp_path, "run")
    assert first.path != second.path
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in (first.path, second.path))


@pytest.mark.parametrize("present, missing", [
    ((), "model.keras"), (("model.keras",), "config.yaml")])
def test_open_names_the_missing_file(tmp_path, present, missing):
    for name in present:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match=rf"is not a kmtl run directory: "
                                        rf"{missing} is missing"):
        RunDir.open(tmp_path)


def test_open_a_missing_directory(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        RunDir.open(tmp_path / "nowhere")


def test_run_directory_from_before_stored_splits_has_no_split(tmp_path):
    assert RunDir(tmp_path).read_split() is None


def test_bad_split_json_is_a_data_error(tmp_path):
    (tmp_path / "split.json").write_text("{not json")
    with pytest.raises(DataError, match="split.json' is not valid JSON"):
        RunDir(tmp_path).read_split()


def test_split_json_is_plain_json(table, tmp_path):
    _, path = table
    _, record = split_data(_config(path))
    run = RunDir(tmp_path)
    run.write_split(record)
    assert json.loads((tmp_path / "split.json").read_text()) == record


def test_a_stored_config_with_values_an_older_kmtl_accepted_stays_readable():
    from kmtl.runs.config import parse_stored_config

    raw = {"name": "old", "data": {"dataset": "penguins"},
           "tasks": [{"name": "species", "type": "multiclass"}],
           "training": {"epochs": True, "mixed_precision": "false",
                        "batch_size": 32}}
    with pytest.warns(UserWarning, match=r"\['training\.epochs', "
                                         r"'training\.mixed_precision'\]"):
        config = parse_stored_config(raw)
    # Read as its default: null, chosen from the training rows at training time.
    assert config.training.epochs is None
    assert config.training.mixed_precision is False
    assert config.training.batch_size == 32
    assert raw["training"]["epochs"] is True  # the caller's mapping is untouched
    with pytest.raises(ConfigError, match="tasks"):
        parse_stored_config({"name": "old", "data": {"dataset": "penguins"}})


# === Damaged run directories and failed writes ===

@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A run directory's model.keras bytes, from a tiny penguins model."""
    import kmtl
    from tests.helpers import fit_tasks_and_features

    frame = kmtl.datasets.load_penguins().dropna().iloc[:40]
    features, tasks = fit_tasks_and_features(frame, kmtl.datasets.penguin_tasks(),
                                             **kmtl.datasets.PENGUIN_FEATURES)
    model = kmtl.build_model(features, tasks, "shared_bottom")
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return model, path.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_a_damaged_model_keras_names_the_file(tmp_path, saved_model, damage):
    _, data = saved_model
    damaged = {"truncated": data[: len(data) // 2], "text": b"not a model",
               "empty": b""}[damage]
    (tmp_path / "model.keras").write_bytes(damaged)
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(DataError, match=r"model\.keras' is damaged: it is no "
                                        r"complete \.keras \(zip\) file\. The run "
                                        r"directory was changed or damaged"):
        RunDir.open(tmp_path).load_model()


@pytest.mark.parametrize("text, error, message", [
    ("tasks: [unclosed\n", DataError, "config.yaml' is not valid YAML"),
    ("just a string\n", DataError, "holds no config .* holds str 'just a string'"),
    ("", DataError, "holds no config .* holds NoneType"),
    ("name: x\n", ConfigError, r"config.yaml': Missing required config key `tasks`"),
    (b"\xff\xfe\x00bad", DataError, "Cannot read .*config.yaml"),
])
def test_a_damaged_config_yaml_names_the_file(tmp_path, text, error, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(error, match=message):
        RunDir(tmp_path).read_config()


def test_a_full_disk_while_saving_the_model_leaves_no_file(tmp_path, saved_model,
                                                           monkeypatch):
    import errno

    model, _ = saved_model
    run = RunDir(tmp_path)

    def half_written(path):
        with open(path, "wb") as handle:
            handle.write(b"PK half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save", half_written)
    with pytest.raises(DataError, match=r"Cannot write .*model\.keras': No space "
                                        r"left on device\. Free disk space"):
        run.save_model(model)
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    run.save_model(model)
    assert os.listdir(tmp_path) == ["model.keras"]
    assert [w.shape for w in run.load_model().get_weights()] == [
        w.shape for w in model.get_weights()]


def test_a_full_disk_while_writing_metrics_keeps_the_earlier_file(tmp_path,
                                                                  monkeypatch):
    import errno

    run = RunDir(tmp_path)
    run.write_metrics({"test": {"y": {"auc": 0.5}}})

    def full(value, handle, indent=None):
        handle.write("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", full)
    with pytest.raises(DataError, match="metrics.json': No space left"):
        run.write_metrics({"test": {"y": {"auc": 0.9}}})
    monkeypatch.undo()
    assert run.read_metrics() == {"test": {"y": {"auc": 0.5}}}
    assert os.listdir(tmp_path) == ["metrics.json"]
