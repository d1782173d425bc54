"""End-to-end tests of `kmtl consolidate` (`kmtl.runs.consolidation`).

One small consolidation runs per module on a hand-built table: 360 rows, three
numeric features (one named `größe x`), a row id excluded from the features,
a binary task `buy` whose label is `x1 + größe x > 0` with 28 labels (~8%)
flipped at known rows, and a multiclass task `kind` (`x3` cut at -0.5 and 0.5)
with ~30% of its labels missing. Three folds, actions relabel, drop and fill,
a shared-bottom model of 8 units. `run_model` is wrapped to record which rows
each fold's model trained on. The tests then read the table, the report and
the recorded models back; a second, single-task consolidation through the
command line and a `kmtl train` on the output reuse it.
"""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run_cli
from helpers import snapshot

import kmtl.runs.consolidation as consolidation_module
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.measures.label_issues import suggest_labels
from kmtl.runs.consolidation import consolidate
from kmtl.runs.training import train
from kmtl.tasks import FOLD_COLUMN
from kmtl.tasks import Task
from kmtl.tasks import consolidation_columns

ROWS = 360
FLIPS = 28
FOLDS = 3
ACCENTED = "größe x"
TASK_NAMES = ["buy", "kind"]


def make_table(rows=ROWS, seed=0):
    """`(frame, flipped, missing)`: the table as written, the rows whose `buy`
    label was flipped (bool), the rows whose `kind` label is missing (bool)."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, rows))
    buy = x1 + x2 > 0
    # Flips among rows 0.6 or more from the boundary: a model can see them.
    clear = np.flatnonzero(np.abs(x1 + x2) > 0.6)
    flipped = np.zeros(rows, dtype=bool)
    flipped[rng.choice(clear, size=FLIPS * rows // ROWS, replace=False)] = True
    buy = buy ^ flipped
    kind = np.where(x3 > 0.5, "high", np.where(x3 < -0.5, "low", "mid")).astype(object)
    missing = rng.random(rows) < 0.3
    kind[missing] = None
    frame = pd.DataFrame({"row_id": np.arange(rows), "x1": x1, ACCENTED: x2,
                          "x3": x3, "buy": np.where(buy, "yes", "no"),
                          "kind": kind})
    return frame, flipped, missing


def make_config(train_path, **consolidate_keys):
    return {
        "name": "shop",
        "data": {"train": str(train_path),
                 "split": {"method": "stratified", "validation": 0.15, "test": 0.0,
                           "seed": 0}},
        "features": {"exclude": ["row_id"]},
        "tasks": [{"name": "buy", "type": "binary", "positive": "yes"},
                  {"name": "kind", "type": "multiclass"}],
        "model": {"architecture": "shared_bottom", "options": {"units": [8]},
                  "tower_units": [4]},
        "training": {"epochs": 30, "batch_size": 32, "learning_rate": 0.05,
                     "early_stopping_patience": 5, "verbose": 0},
        "export": {"enabled": False},
        "consolidate": {"folds": FOLDS, **consolidate_keys},
    }


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def consolidated(tmp_path_factory):
    root = tmp_path_factory.mktemp("consolidate")
    frame, flipped, missing = make_table()
    path = root / "shop.csv"
    frame.to_csv(path, index=False)
    config = make_config(path, actions=["relabel", "drop", "fill"],
                         pseudo_label_threshold={"kind": 0.8},
                         relabel_threshold=0.8)
    config_path = root / "shop.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False,
                                          allow_unicode=True), encoding="utf-8")
    before = sha256(path)
    calls = []
    original = consolidation_module.run_model

    def recording_run_model(run_config, data, *args, **kwargs):
        run = original(run_config, data, *args, **kwargs)
        calls.append({"train": data.train["row_id"].to_numpy(),
                      "validation": data.validation["row_id"].to_numpy(),
                      "model": run.model, "features": data.features,
                      "batch_size": data.batch_size})
        return run

    lines = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(consolidation_module, "run_model", recording_run_model)
        result = consolidate(config, output_dir=root / "runs", log=lines.append)
    return {"root": root, "path": path, "config": config,
            "config_path": config_path, "input": frame, "flipped": flipped,
            "missing": missing, "hash_before": before, "result": result,
            "calls": calls, "lines": lines}


# === Detection ===


def test_flags_most_of_the_injected_flips(consolidated):
    flagged = consolidated["result"].table["buy__label_issue"].to_numpy()
    flipped = consolidated["flipped"]
    hits = (flagged & flipped).sum()
    recall = hits / flipped.sum()
    precision = hits / flagged.sum()
    # Measured: recall 1.0, precision 0.76 (flip rate 0.078).
    assert recall >= 0.7, (recall, precision)
    assert precision >= 0.4, (recall, precision)
    # The clean task's labels are hardly flagged.
    assert consolidated["result"].table["kind__label_issue"].sum() <= 10


def test_each_row_is_scored_by_the_model_that_did_not_train_on_it(consolidated):
    table = consolidated["result"].table
    calls = consolidated["calls"]
    folds = table[FOLD_COLUMN].to_numpy()
    assert len(calls) == FOLDS  # one multi-task model per fold
    assert sorted(np.unique(folds)) == list(range(FOLDS))
    ids = table["row_id"].to_numpy()
    detections = consolidated["result"].detections["multi_task"]
    for fold, call in enumerate(calls):
        held = folds == fold
        seen = np.concatenate([call["train"], call["validation"]])
        # The fold's model trained (and early-stopped) on every other row, and
        # on no row of its fold.
        assert len(seen) == len(set(seen))
        assert set(seen) == set(ids[~held])
        assert not set(seen) & set(ids[held])
        # The held-out rows' predictions are that model's.
        rows = table[held].drop(columns=consolidation_columns(
            [Task("buy", "binary"), Task("kind", "multiclass")]))
        predictions = call["model"].predict(
            make_dataset(rows, call["features"], None, call["batch_size"]),
            verbose=0)
        # Confidences are those of the noise-corrected probabilities (the
        # report's noise matrix), computed here from this model's outputs.
        rounds = consolidated["result"].report["tasks"]
        for task in call["model"].tasks:
            matrix = rounds[task.name]["rounds"][0]["noise_matrix"]
            _, expected = suggest_labels(task, predictions[task.name], matrix)
            np.testing.assert_allclose(
                detections[task.name]["confidence"].to_numpy()[held], expected,
                atol=1e-5)
    assert any(line.startswith("[round 1/1] fold 3/3 (multi_task)")
               for line in consolidated["lines"])


# === The output table ===


def test_input_is_untouched_and_output_is_beside_it(consolidated):
    assert sha256(consolidated["path"]) == consolidated["hash_before"]
    output = consolidated["root"] / "shop.consolidated.parquet"
    assert consolidated["result"].output == str(output)
    written = pd.read_parquet(output)
    expected = consolidated["result"].table
    assert list(written.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    # Every input row and feature column, unchanged, in order.
    frame = consolidated["input"]
    assert len(written) == ROWS
    for column in ("row_id", "x1", ACCENTED, "x3"):
        np.testing.assert_array_equal(written[column].to_numpy(),
                                      frame[column].to_numpy())
    added = [c for c in written.columns if c not in frame.columns]
    assert added == [f"{task}__{kind}" for task in TASK_NAMES for kind in
                     ("label_issue", "label_quality", "pseudo", "suggested")
                     ] + [FOLD_COLUMN]


def _changes(given, new):
    """Bool arrays: relabelled, dropped, filled (input -> output labels)."""
    given = pd.Series(given, dtype=object)
    new = pd.Series(new, dtype=object)
    both = given.notna() & new.notna()
    relabelled = both & (given.astype(str) != new.astype(str))
    dropped = given.notna() & new.isna()
    filled = given.isna() & new.notna()
    return relabelled.to_numpy(), dropped.to_numpy(), filled.to_numpy()


def test_pseudo_marks_exactly_the_relabelled_and_filled_labels(consolidated):
    table = consolidated["result"].table
    frame = consolidated["input"]
    detections = consolidated["result"].detections["multi_task"]
    for task in TASK_NAMES:
        relabelled, dropped, filled = _changes(frame[task], table[task])
        pseudo = table[f"{task}__pseudo"].to_numpy()
        flagged = table[f"{task}__label_issue"].to_numpy()
        np.testing.assert_array_equal(pseudo, relabelled | filled)
        # relabel + drop: every flagged label is replaced or masked, no other.
        np.testing.assert_array_equal(flagged, relabelled | dropped)
        assert not (pseudo & dropped).any()
        # A written label is the model's suggestion.
        written = relabelled | filled
        np.testing.assert_array_equal(
            table.loc[written, task].astype(str),
            table.loc[written, f"{task}__suggested"].astype(str))
        confidence = detections[task]["confidence"].to_numpy()
        assert (confidence[relabelled] >= 0.8).all()
    assert not _changes(frame["buy"], table["buy"])[2].any()  # nothing missing
    assert set(table["buy"].dropna()) <= {"yes", "no"}
    # kind: only missing labels are filled, and only the confident ones.
    _, _, filled = _changes(frame["kind"], table["kind"])
    missing = consolidated["missing"]
    assert filled.any() and not (filled & ~missing).any()
    confidence = detections["kind"]["confidence"].to_numpy()
    np.testing.assert_array_equal(filled, missing & (confidence >= 0.8))
    assert set(table["kind"].dropna()) <= {"high", "mid", "low"}


# === The report ===


def test_report_files_and_counts_add_up(consolidated):
    result = consolidated["result"]
    directory = Path(result.directory)
    assert directory.parent == consolidated["root"] / "runs"
    assert directory.name.startswith("shop-consolidate-")
    report = json.loads((directory / "report.json").read_text())
    markdown = (directory / "report.md").read_text()
    for plot in ("label_quality_buy", "label_quality_kind", "confusion_buy",
                 "confusion_kind", "changes"):
        png = directory / "plots" / f"{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](plots/{plot}.png)" in markdown
    assert report["output"] == str(consolidated["root"] /
                                   "shop.consolidated.parquet")
    assert report["rows"] == ROWS and report["folds"] == FOLDS
    table = result.table
    frame = consolidated["input"]
    for task in TASK_NAMES:
        (counts,) = report["tasks"][task]["rounds"]
        relabelled, dropped, filled = _changes(frame[task], table[task])
        assert counts["flagged"] == table[f"{task}__label_issue"].sum()
        assert counts["relabelled"] == relabelled.sum()
        assert counts["dropped"] == dropped.sum()
        assert counts["filled"] == filled.sum()
        assert counts["missing"] == frame[task].isna().sum()
        assert counts["scored"] + counts["pseudo"] + counts["missing"] == ROWS
        assert counts["filled"] <= counts["pseudo_label_candidates"]
        matrix = np.asarray(counts["confusion"]["matrix"])
        assert matrix.sum() == counts["scored"]
        histogram = counts["quality_histogram"]
        assert sum(histogram["flagged"]) == counts["flagged"]
        assert (sum(histogram["flagged"]) + sum(histogram["not_flagged"])
                == counts["scored"])
        assert f"| 1 | {task} | {counts['scored']:,} | {counts['flagged']:,} |" \
            in markdown
    assert report["tasks"]["kind"]["rounds"][0]["missing"] == \
        consolidated["missing"].sum()


# === Training on the output ===


def test_output_trains_and_consolidation_columns_are_not_features(consolidated):
    config = consolidated["config"]
    output = consolidated["result"].output
    retrain = {**config, "name": "retrain",
               "data": {**config["data"], "train": output},
               "tasks": [{**t, "pseudo_label_weight": 0.5} for t in config["tasks"]],
               "training": {**config["training"], "epochs": 2}}
    result = train(retrain, output_dir=consolidated["root"] / "runs", resume=None,
                   log=lambda line: None)
    stored = yaml.safe_load((Path(result["run_dir"]) / "config.yaml").read_text(
        encoding="utf-8"))
    features = stored["features"]
    used = set(features["numeric"] or []) | set(features["categorical"] or [])
    assert used == {"x1", ACCENTED, "x3"}
    added = consolidation_columns([Task(name, "binary") for name in TASK_NAMES])
    assert set(added) <= set(pd.read_parquet(output).columns)
    assert not used & set(added)
    assert [t["pseudo_label_weight"] for t in stored["tasks"]] == [0.5, 0.5]
    assert set(result["metrics"]["validation"]) == set(TASK_NAMES)


def test_pseudo_label_weight_scales_the_pseudo_rows():
    frame = pd.DataFrame({"buy": ["yes", "no", "yes", None, "no"],
                          "buy__pseudo": [True, False, None, False, True]})
    task = Task("buy", "binary", positive="yes", pseudo_label_weight=0.25)
    labels, weight = task.fit(frame).encode(frame)
    np.testing.assert_array_equal(labels[:, 0], [1, 0, 1, 0, 0])
    # labelled (1, 1, 1, 0, 1) times 0.25 where pseudo.
    np.testing.assert_allclose(weight, [0.25, 1.0, 1.0, 0.0, 0.25])
    assert Task.from_config(task.get_config()).pseudo_label_weight == 0.25
    _, plain = Task("buy", "binary", positive="yes").fit(frame).encode(frame)
    np.testing.assert_allclose(plain, [1.0, 1.0, 1.0, 0.0, 1.0])
    _, without = task.encode(frame.drop(columns="buy__pseudo"))
    np.testing.assert_allclose(without, [1.0, 1.0, 1.0, 0.0, 1.0])
    with pytest.raises(ConfigError, match="pseudo_label_weight"):
        Task("buy", "binary", pseudo_label_weight=1.5)


# === The single-task detector, through the command line ===


def test_single_task_cli_writes_a_second_table(consolidated):
    root = consolidated["root"]
    first = root / "shop.consolidated.parquet"
    first_hash = sha256(first)
    code, out, err = run_cli("consolidate", consolidated["config_path"],
                             "--single-task", "--folds", 2, "--epochs", 3,
                             "--output-dir", root / "runs")
    assert code == 0, err[-3000:]
    second = root / "shop.consolidated-2.parquet"
    assert f"Consolidated table: {second}" in out
    assert "fold 2/2 (single_task)" in out
    assert sha256(first) == first_hash
    assert sha256(consolidated["path"]) == consolidated["hash_before"]
    table = pd.read_parquet(second)
    assert list(table.columns) == list(pd.read_parquet(first).columns)
    assert sorted(table[FOLD_COLUMN].unique()) == [0, 1]
    directory = Path(out.strip().splitlines()[-1].removeprefix("Report: ")).parent
    report = json.loads((directory / "report.json").read_text())
    assert report["detector"] == "single_task" and report["folds"] == 2
    assert report["tasks"]["buy"]["rounds"][0]["flagged"] == \
        table["buy__label_issue"].sum()


# === Bad input: a clear error, nothing written ===


@pytest.fixture
def small(tmp_path):
    frame, _, _ = make_table(rows=30)
    path = tmp_path / "small.csv"
    frame.to_csv(path, index=False)
    return tmp_path, path, frame


def _nothing_written(root, before):
    assert snapshot(root) == before
    assert not (root / "runs").exists()


@pytest.mark.parametrize("keys, match", [
    ({"pseudo_label_threshold": 1.5}, r"consolidate\.pseudo_label_threshold"),
    ({"pseudo_label_threshold": -0.1}, r"consolidate\.pseudo_label_threshold"),
    ({"relabel_threshold": {"buy": 2}}, r"consolidate\.relabel_threshold\.buy"),
    ({"folds": 1}, r"consolidate\.folds"),
    ({"actions": ["report", "fix"]}, r"consolidate\.actions\[1\].*'fix'"),
    ({"actions": ["fix"]}, r"consolidate\.actions\[0\]"),
    ({"tasks": ["nope"]}, r"consolidate\.tasks.*'nope'"),
    ({"pseudo_label_threshold": {"nope": 0.9}},
     r"consolidate\.pseudo_label_threshold.*'nope'"),
])
def test_bad_consolidate_keys_are_config_errors(small, keys, match):
    root, path, _ = small
    before = snapshot(root)
    with pytest.raises(ConfigError, match=match):
        consolidate(make_config(path, **keys), output_dir=root / "runs")
    _nothing_written(root, before)


@pytest.mark.parametrize("keys, flags, match", [
    ({"pseudo_label_threshold": 1.5}, [], r"consolidate\.pseudo_label_threshold"),
    ({}, ["--folds", 1], r"consolidate\.folds"),
    ({"actions": ["fix"]}, [], r"consolidate\.actions\[0\]"),
])
def test_cli_refuses_bad_keys_with_exit_code_2(small, keys, flags, match):
    root, path, _ = small
    config = root / "small.yaml"
    config.write_text(yaml.safe_dump(make_config(path, **keys), allow_unicode=True),
                      encoding="utf-8")
    before = snapshot(root)
    code, out, err = run_cli("consolidate", config, *flags, "--output-dir",
                             root / "runs")
    assert code == 2
    assert err.startswith("kmtl consolidate: error: ")
    assert re.search(match, err), err
    _nothing_written(root, before)


def test_a_task_without_target_cannot_be_checked(small):
    root, path, _ = small
    config = make_config(path, tasks=["score"])
    config["tasks"].append({"name": "score", "type": "binary", "target": []})
    before = snapshot(root)
    with pytest.raises(ConfigError, match=r"consolidate\.tasks.*'score'.*target"):
        consolidate(config, output_dir=root / "runs")
    _nothing_written(root, before)


def test_a_task_whose_column_is_empty_is_a_data_error(small):
    root, path, frame = small
    frame["kind"] = np.nan
    frame.to_csv(path, index=False)
    before = snapshot(root)
    with pytest.raises(DataError, match=r"consolidate.*'kind'.*no row"):
        consolidate(make_config(path), output_dir=root / "runs")
    _nothing_written(root, before)
    config = root / "small.yaml"
    config.write_text(yaml.safe_dump(make_config(path), allow_unicode=True),
                      encoding="utf-8")
    before = snapshot(root)
    code, _, err = run_cli("consolidate", config, "--output-dir", root / "runs")
    assert code == 2 and "'kind'" in err
    _nothing_written(root, before)


def test_output_may_not_be_the_input_or_an_existing_file(small):
    root, _, frame = small
    table = root / "small.parquet"
    frame.to_parquet(table, index=False)
    existing = root / "taken.parquet"
    existing.write_bytes(b"keep me")
    before = snapshot(root)
    for output, match in ((table, "is the input table"),
                          (existing, "exists already"),
                          (root / "out.csv", "not a Parquet path")):
        with pytest.raises(ConfigError, match=rf"consolidate\.output.*{match}"):
            consolidate(make_config(table, output=str(output)),
                        output_dir=root / "runs")
        _nothing_written(root, before)


def test_a_threshold_mapping_falls_back_to_the_keys_default():
    from kmtl.runs.config import parse_config
    from kmtl.runs.consolidation import _threshold

    section = parse_config({
        "data": {"dataset": "penguins"},
        "tasks": [{"name": "sex", "type": "binary"},
                  {"name": "island", "type": "multiclass"}],
        "consolidate": {"relabel_threshold": {"sex": 0.5},
                        "pseudo_label_threshold": {"island": 0.7}}}).consolidate
    assert _threshold(section, "relabel_threshold", "sex") == 0.5
    assert _threshold(section, "relabel_threshold", "island") == 0.9
    assert _threshold(section, "pseudo_label_threshold", "sex") == 0.95
    assert _threshold(section, "pseudo_label_threshold", "island") == 0.7


def test_a_second_round_scores_the_first_rounds_table(tmp_path):
    # Round 1 relabels, drops and fills; round 2 trains on that table (the
    # model's labels weighed by pseudo_label_weight), scores only the labels
    # still given, and its flags add to round 1's.
    frame, _, missing = make_table(rows=200)
    path = tmp_path / "shop.csv"
    frame.to_csv(path, index=False)
    config = make_config(path, folds=2, rounds=2,
                         actions=["relabel", "drop", "fill"],
                         pseudo_label_threshold=0.8, relabel_threshold=0.8)
    config["training"]["epochs"] = 10
    config["tasks"][1]["pseudo_label_weight"] = 0.5
    lines = []
    result = consolidate(config, output_dir=tmp_path / "runs", log=lines.append)
    first, second = result.report["tasks"]["kind"]["rounds"]
    # Dropped labels are missing in round 2; filled ones are the model's.
    assert first["dropped"] or first["filled"]
    assert second["missing"] == (first["missing"] - first["filled"]
                                 + first["dropped"])
    assert second["pseudo"] == first["relabelled"] + first["filled"]
    assert second["scored"] == first["scored"] - first["relabelled"] - first[
        "dropped"]
    buy = result.report["tasks"]["buy"]["rounds"]
    table = result.table
    assert table["buy__label_issue"].sum() >= buy[0]["flagged"]
    assert table["buy__label_issue"].sum() <= buy[0]["flagged"] + buy[1]["flagged"]
    # A label marked pseudo is present (the model's), never a masked one.
    pseudo = table["kind__pseudo"].to_numpy()
    assert table["kind"].notna().to_numpy()[pseudo].all()
    assert sum(line.startswith("[round 2/2] fold 2/2") for line in lines) == 1


def test_multilabel_and_regression_tasks_with_a_group_split(tmp_path):
    # The other task types end to end: a delimited multilabel column and a
    # regression target with one gross outlier, folds cut by group.
    rng = np.random.default_rng(0)
    rows = 160
    x = rng.normal(size=(rows, 2))
    tags = np.array(["|".join(t for t, on in (("red", a > 0), ("blue", b > 0)) if on)
                     for a, b in x], dtype=object)
    tags[rng.random(rows) < 0.2] = None
    y = 2 * x[:, 0] + rng.normal(scale=0.1, size=rows)
    y[5] = 40.0
    frame = pd.DataFrame({"a": x[:, 0], "b x": x[:, 1], "tags": tags, "y": y,
                          "g": rng.integers(0, 8, rows)})
    path = tmp_path / "tags.parquet"
    frame.to_parquet(path)
    config = {
        "name": "tags",
        "data": {"train": str(path), "split": {"method": "group", "group_by": "g",
                                               "validation": 0.2, "test": 0.0}},
        "tasks": [{"name": "tags", "type": "multilabel", "delimiter": "|"},
                  {"name": "y", "type": "regression"}],
        "model": {"architecture": "shared_bottom", "options": {"units": [8]},
                  "tower_units": [4]},
        "training": {"epochs": 10, "batch_size": 32, "learning_rate": 0.02,
                     "early_stopping_patience": 3, "verbose": 0},
        "export": {"enabled": False},
        "consolidate": {"folds": 2, "actions": ["drop", "fill"],
                        "pseudo_label_threshold": 0.5},
    }
    result = consolidate(config, output_dir=tmp_path / "runs", log=lambda _: None)
    table = pd.read_parquet(result.output)
    folds = table[FOLD_COLUMN].to_numpy()
    for _, group in frame.groupby("g"):      # a group's rows share a fold
        assert len(set(folds[group.index])) == 1
    # The outlier is flagged and masked; regression labels are never filled.
    assert table.loc[5, "y__label_issue"] and np.isnan(table.loc[5, "y"])
    assert not table["y__pseudo"].any()
    assert table["y__suggested"].dtype == "float64"
    # Filled tags are delimited label sets of the task's classes.
    filled = table["tags__pseudo"].to_numpy()
    assert filled.any() and not frame["tags"].notna().to_numpy()[filled].any()
    for value in table.loc[filled, "tags"]:
        assert set(filter(None, value.split("|"))) <= {"red", "blue"}
    assert result.report["tasks"]["tags"]["rounds"][0]["noise_matrix"] is None
