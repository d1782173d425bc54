"""A multilabel task whose labels come from one delimited string column
(`Task("tags", "multilabel", target="tags", delimiter="|")`): splitting and
encoding by hand, the order of the fitted classes, the errors, configs, the
shared task-type checks, a `.keras` round trip after training, and a YAML run
through `kmtl train` and `kmtl predict`."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import assert_family_round_trip
from task_type_case import TaskTypeExample
from task_type_case import check_config_round_trip
from task_type_case import check_decode
from task_type_case import check_labels
from task_type_case import check_masking
from task_type_case import check_model

import kmtl
from kmtl.cli import main
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.runs.config import read_config
from kmtl.runs.data import build_tasks
from kmtl.runs.training import train
from kmtl.tasks import MultilabelTask
from kmtl.tasks import Task

# Eight cells: a missing cell (NaN, None) leaves the row unlabelled; "" and ";"
# are labelled rows without a label; spaces around labels and empty pieces go;
# "news;news" counts news once.
CELLS = ["news; sports", "sports", np.nan, "", " weather ;news;;", "news;news",
         None, ";"]
# Rows carrying each label: news 0, 4, 5 (3); sports 0, 1 (2); weather 4 (1).
CLASSES = ["news", "sports", "weather"]
LABELS = [[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1], [1, 0, 0],
          [0, 0, 0], [0, 0, 0]]
WEIGHTS = [1, 1, 0, 1, 1, 1, 0, 1]


def tags_task(**arguments):
    return Task("tags", "multilabel", target="tags", delimiter=";", **arguments)


def frame_of(cells):
    return pd.DataFrame({"tags": cells})


# === Splitting and encoding ===


def test_encode_by_hand():
    frame = frame_of(CELLS)
    task = tags_task().fit(frame)
    assert type(task) is MultilabelTask
    assert task.classes == CLASSES and task.units == 3
    labels, weight = task.encode(frame)
    assert labels.dtype == "float32" and labels.shape == (8, 3)
    np.testing.assert_array_equal(labels, LABELS)
    assert weight.dtype == "float32"
    np.testing.assert_array_equal(weight, WEIGHTS)


def test_encode_a_split_without_labels():
    task = tags_task().fit(frame_of(CELLS))
    labels, weight = task.encode(frame_of([None, np.nan]))
    np.testing.assert_array_equal(labels, np.zeros((2, 3)))
    np.testing.assert_array_equal(weight, [0, 0])


def test_string_and_categorical_columns_encode_alike():
    expected = tags_task().fit(frame_of(CELLS)).encode(frame_of(CELLS))
    for dtype in ("string", "category"):
        frame = frame_of(pd.Series(CELLS, dtype=dtype))
        task = tags_task().fit(frame)
        assert task.classes == CLASSES
        for got, want in zip(task.encode(frame), expected):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cells, classes", [
    # z in 3 rows, x and y in 2 (tie: by name), w in 1.
    (["z", "z;y", "y;x", "x;z", "w"], ["z", "x", "y", "w"]),
    # A label repeated in a cell counts once: b is in 2 rows, a in 1.
    (["a;a;a", "b", "b;c"], ["b", "a", "c"]),
])
def test_classes_by_rows_then_name(cells, classes):
    assert tags_task().fit(frame_of(cells)).classes == classes


def test_declared_classes_keep_their_order():
    frame = frame_of(CELLS)
    task = tags_task(classes=["weather", "news", "sports", "sun"]).fit(frame)
    assert task.classes == ["weather", "news", "sports", "sun"]
    labels, _ = task.encode(frame)
    # The declared order, and a column of zeros for `sun`, found in no row.
    expected = np.asarray(LABELS)[:, [2, 0, 1]]
    np.testing.assert_array_equal(labels, np.c_[expected, np.zeros(8)])


def test_metrics_are_named_after_the_fitted_labels():
    task = tags_task()
    # Per-label metrics come with the labels, at fit.
    assert task.metrics == ["auc", "auc_micro"]
    task.fit(frame_of(["Sci-Fi;news", "news", "drama"]))
    assert task.classes == ["news", "Sci-Fi", "drama"]
    assert task.metrics == ["auc", "auc_micro", "auc_news", "auc_Sci_Fi",
                            "auc_drama"]
    assert [m.name for m in task.build_metrics()] == [
        f"tags_{m}" for m in task.metrics]
    decoded = task.decode(np.array([[0.1, 0.2, 0.3]], "float32"))
    assert list(decoded) == ["tags_news", "tags_Sci-Fi", "tags_drama"]


def test_given_metrics_are_expanded_at_fit():
    task = tags_task(metrics=["auc_micro", "accuracy_per_label", "auc_news"])
    assert task.metrics == ["auc_micro", "accuracy_per_label", "auc_news"]
    task.fit(frame_of(CELLS))
    assert task.metrics == ["auc_micro", "accuracy_news", "accuracy_sports",
                            "accuracy_weather", "auc_news"]


def test_more_than_ten_labels_log_no_per_label_metric_by_default():
    cells = [chr(ord("a") + i) for i in range(11)]
    task = tags_task().fit(frame_of(cells))
    assert task.units == 11
    assert task.metrics == ["auc", "auc_micro"]


# === Errors ===


def test_one_column_without_delimiter_is_refused():
    with pytest.raises(ConfigError, match=r"list of 0/1 target columns, or one "
                       r"column of delimited labels with `delimiter`.*"
                       r"target='tags'.*delimiter='\|'"):
        Task("tags", "multilabel", target="tags")


def test_delimiter_with_target_columns_is_refused():
    with pytest.raises(ConfigError, match=r"Task 'tags': `delimiter` splits the "
                       r"labels of one target column.*target=\['a', 'b'\]"):
        Task("tags", "multilabel", target=["a", "b"], delimiter="|")


@pytest.mark.parametrize("delimiter", ["", 3, ["|"]])
def test_delimiter_must_be_a_non_empty_string(delimiter):
    with pytest.raises(ConfigError, match=r"`delimiter` must be a non-empty "
                       rf"string.*Received: delimiter={delimiter!r}".replace(
                           "[", r"\[").replace("]", r"\]")):
        Task("tags", "multilabel", target="tags", delimiter=delimiter)


@pytest.mark.parametrize("classes, problem", [
    (["a", "a"], "'a' is listed twice"),
    (["a", 1], "1 cannot be a label"),
    (["a;b"], "'a;b' cannot be a label"),
    ([" a"], "' a' cannot be a label"),
    ([], "the list is empty"),
])
def test_declared_classes_must_be_label_strings(classes, problem):
    with pytest.raises(ConfigError, match=rf"Task 'tags': `classes` .*{problem}"):
        tags_task(classes=classes)


def test_label_outside_declared_classes_at_fit():
    frame = frame_of(["a;b;c;d;e;f;g", "a;x"])
    task = tags_task(classes=["a"])
    with pytest.raises(DataError) as error:
        task.fit(frame)
    # Task, column, up to 5 labels (in order of appearance) and the fix.
    assert str(error.value).startswith(
        "Task 'tags': column 'tags' in the training data has 7 label(s) outside "
        "the task's 1 classes: 'b', 'c', 'd', 'e', 'f' and 2 more. Add them to "
        "`classes`")


def test_label_unseen_in_training_at_encode():
    task = tags_task().fit(frame_of(CELLS))
    with pytest.raises(DataError, match=r"column 'tags' in the data has 1 "
                       r"label\(s\) outside the task's 3 classes: 'rain'\. Add "
                       r"them to `classes`"):
        task.encode(frame_of(["news", "rain;news"]))


def test_cells_must_be_strings():
    with pytest.raises(DataError, match=r"Task 'tags': column 'tags' holds labels "
                       r"separated by ';', so its cells must be strings; found 3 "
                       r"\(int\).*dtype: \{tags: str\}"):
        tags_task().fit(pd.DataFrame({"tags": ["a", 3, None]}, dtype=object))


def test_no_label_in_the_training_split():
    with pytest.raises(DataError, match=r"no label found in column 'tags'.*"
                       r"splitting on ';'"):
        tags_task().fit(frame_of(["", " ; ", None]))


def test_unknown_metric_is_refused_before_fit_and_per_label_at_fit():
    with pytest.raises(ConfigError, match="unknown metric 'aucc'"):
        tags_task(metrics=["aucc"])
    task = tags_task(metrics=["auc_rain"])
    with pytest.raises(ConfigError, match=r"unknown metric 'auc_rain'.*"
                       r"'auc_news'"):
        task.fit(frame_of(CELLS))


def test_only_multilabel_tasks_take_a_delimiter():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['delimiter'\] for "
                       r"a binary task"):
        kmtl.tasks.get({"name": "y", "type": "binary", "delimiter": "|"})


# === Configs ===


def test_config_round_trip_keeps_delimiter_classes_and_metrics():
    unfitted = tags_task()
    config = unfitted.get_config()
    assert config["delimiter"] == ";" and config["classes"] is None
    # Defaulted metrics stay defaults, so a clone expands them at its own fit.
    assert config["metrics"] is None
    assert_family_round_trip(unfitted, kmtl.tasks, Task)
    fitted = tags_task().fit(frame_of(CELLS))
    config = fitted.get_config()
    assert config["delimiter"] == ";" and config["classes"] == CLASSES
    assert_family_round_trip(fitted, kmtl.tasks, Task,
                             ["delimiter", "classes", "metrics", "units"])
    clone = Task.from_config(unfitted.get_config()).fit(frame_of(CELLS))
    assert clone.get_config() == fitted.get_config()
    given = tags_task(metrics=["auc_per_label"])
    assert given.get_config()["metrics"] == ["auc_per_label"]
    assert_family_round_trip(given, kmtl.tasks, Task)


def test_target_columns_keep_a_null_delimiter():
    task = Task("tags", "multilabel", target=["a", "b"])
    assert task.get_config()["delimiter"] is None
    assert_family_round_trip(task, kmtl.tasks, Task)


def test_a_yaml_task_with_a_delimiter(tmp_path):
    path = tmp_path / "tags.yaml"
    path.write_text(
        "data: {dataset: penguins}\n"
        "tasks:\n"
        "  - {name: tags, type: multilabel, target: tags, delimiter: '|'}\n")
    (task,) = build_tasks(read_config(str(path)))
    assert type(task) is MultilabelTask
    assert (task.target, task.delimiter) == ("tags", "|")


# === The shared task-type checks ===

# Five rows, labels b and a; a; missing; none; c and a (a repeated).
# Rows: a 3, b 1, c 1 -> classes a, b, c.
DELIMITED = TaskTypeExample(
    declare={"target": "y_tags", "delimiter": "|"},
    columns={"y_tags": ["b|a", "a", None, "", " c | a|a"]},
    fitted={"classes": ["a", "b", "c"], "units": 3, "delimiter": "|",
            "metrics": ["auc", "auc_micro", "auc_a", "auc_b", "auc_c"]},
    labels=[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],
            [1.0, 0.0, 1.0]],
    weights=[1.0, 1.0, 0.0, 1.0, 1.0],
    predictions=[[0.9, 0.2, 0.4], [0.1, 0.8, 0.3]],
    decoded={"y_a": [0.9, 0.1], "y_b": [0.2, 0.8], "y_c": [0.4, 0.3]},
    head={"y": "Dense"},
)


def test_shared_checks_of_a_delimited_column(tmp_path):
    # Not `check_contract`: it reads `units` of a task before `fit`, and a
    # delimited column's labels are known only after it.
    check_config_round_trip("multilabel", DELIMITED)
    check_labels("multilabel", DELIMITED)
    check_decode("multilabel", DELIMITED)
    check_model("multilabel", tmp_path, DELIMITED)
    check_masking("multilabel", DELIMITED)


# === Training, saving and predicting ===


def tagged_table(rows=40):
    """A numeric `x` (row i: i / 10) and tags that follow it: `low` for the
    first half, `high` for the second, `even` for even rows; cell i missing
    when i % 7 == 3, else empty when i % 5 == 4.

    Of 40 rows: low in 13 (20 less 3 missing and 4 empty), high in 14 (20
    less 3 missing and 3 empty), even in 14 (20 less 10, 24, 38 missing and
    4, 14, 34 empty).
    """
    cells = []
    for i in range(rows):
        labels = ["low" if i < rows // 2 else "high"] + (["even"] if i % 2 == 0
                                                         else [])
        cells.append(None if i % 7 == 3 else "" if i % 5 == 4 else "|".join(labels))
    return pd.DataFrame({"x": np.arange(rows) / 10, "tags": cells})


def test_train_save_and_load_give_the_same_predictions(tmp_path):
    frame = tagged_table()
    features = [Feature("x", "numeric").fit(frame)]
    tasks = [Task("tags", "multilabel", target="tags", delimiter="|").fit(frame)]
    # even and high in 14 rows (by name), low in 13.
    assert tasks[0].classes == ["even", "high", "low"]
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,),
                             tower_units=(3,))
    model.compile(optimizer="adam")
    data = kmtl.data.make_dataset(frame, features, tasks, batch_size=16)
    history = model.fit(data, epochs=2, verbose=0)
    assert {"tags_loss", "tags_auc", "tags_auc_micro", "tags_auc_even",
            "tags_auc_high", "tags_auc_low"} <= set(history.history)
    inputs = {"x": frame["x"].to_numpy("float32")[:, None]}
    predictions = keras.ops.convert_to_numpy(model(inputs)["tags"])
    assert predictions.shape == (40, 3)

    path = tmp_path / "tags.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    (task,) = loaded.tasks
    assert (type(task), task.delimiter, task.classes) == (
        MultilabelTask, "|", ["even", "high", "low"])
    assert task.get_config() == tasks[0].get_config()
    again = keras.ops.convert_to_numpy(loaded(inputs)["tags"])
    np.testing.assert_array_equal(again, predictions)


def test_yaml_run_then_kmtl_predict(tmp_path, capsys):
    table = tmp_path / "tags.csv"
    frame = tagged_table()
    frame.to_csv(table, index=False)
    config = tmp_path / "tags.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"train": str(table)},
        "tasks": [{"name": "tags", "type": "multilabel", "target": "tags",
                   "delimiter": "|"}],
        "training": {"epochs": 2, "verbose": 0},
        "export": {"enabled": False}}))
    result = train(read_config(str(config)), output_dir=str(tmp_path / "runs"),
                   log=lambda line: None)
    run_dir = Path(result["run_dir"])
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    (task,) = saved["tasks"]
    assert task["delimiter"] == "|"
    # The order depends on the rows of the training split.
    assert sorted(task["classes"]) == ["even", "high", "low"]
    assert "auc_even" in json.dumps(result["metrics"])

    source = tmp_path / "features.csv"
    frame[["x"]].to_csv(source, index=False)
    target = tmp_path / "predictions.csv"
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(source), str(target)]) == 0
    written = pd.read_csv(target)
    assert list(written.columns) == [f"tags_{c}" for c in task["classes"]]
    assert len(written) == 40
    assert ((written >= 0) & (written <= 1)).all().all()
