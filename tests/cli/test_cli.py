"""End-to-end tests of the `kmtl` command line on the penguins example.

`kmtl train` runs once per module in a subprocess (the installed `kmtl` script);
the commands that read its run directory run in-process through
`kmtl.cli.main`, which is what the script calls, to keep the module fast.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml
from helpers import read_tensorboard
from helpers import snapshot
from sklearn.metrics import roc_auc_score

import kmtl
from kmtl.cli import main
from kmtl.models.export import existing_versions
from kmtl.runs.config import resolve_config
from kmtl.runs.data import load_splits

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "penguins.yaml"
EPOCHS = 5
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
# Per task: the metrics the example config asks for (the defaults), plus `loss`.
TASK_METRICS = {
    "species": {"loss", "accuracy"},
    "sex": {"loss", "auc", "accuracy"},
    "body_mass_g": {"loss", "mae", "rmse"},
}
PREDICTION_COLUMNS = ["species", "species_p_Adelie", "species_p_Chinstrap",
                      "species_p_Gentoo", "sex", "body_mass_g"]
FEATURE_COLUMNS = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                   "year"]


def kmtl_command():
    """The venv's `kmtl` script, else `python -m kmtl.cli`."""
    script = Path(sys.executable).with_name("kmtl")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "kmtl.cli"]


def run_script(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(kmtl_command() + [str(a) for a in args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def run_main(capsys, *args):
    """`kmtl ARGS` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err




def raw_inputs(model, frame):
    """The model's inputs built straight from the table's columns, `(rows, 1)`."""
    inputs = {}
    for feature in model.features:
        column = frame[feature.name]
        if feature.dtype == "float32":
            inputs[feature.name] = column.to_numpy("float32")[:, None]
        else:
            values = column.astype(object).where(column.notna(), "").astype(str)
            inputs[feature.name] = tf.constant(values.to_numpy()[:, None])
    return inputs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One `kmtl train examples/penguins.yaml` run in a subprocess."""
    root = tmp_path_factory.mktemp("cli")
    result = run_script("train", EXAMPLE, "--output-dir", root / "runs",
                        "--export-dir", root / "sm", "--epochs", EPOCHS, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "stdout": result.stdout, "stderr": result.stderr,
            "runs": root / "runs", "export": root / "sm"}


@pytest.fixture(scope="module")
def run_dir(trained):
    runs = [p for p in trained["runs"].iterdir() if p.is_dir()]
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module")
def model(run_dir):
    return keras.saving.load_model(run_dir / "model.keras")


@pytest.fixture(scope="module")
def penguins_csv(trained):
    path = trained["root"] / "penguins.csv"
    kmtl.datasets.load_penguins().to_csv(path, index=False)
    return path


# === Help ===


def test_top_level_help_lists_the_commands(tmp_path):
    result = run_script("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: kmtl ")
    for command in ("train", "evaluate", "predict", "export", "compare",
                    "config-schema"):
        assert command in result.stdout


@pytest.mark.parametrize("command, expected", [
    ("train", ["usage: kmtl train", "config", "--output-dir", "--export-dir",
               "--epochs", "--seed", "--data-dir"]),
    ("evaluate", ["usage: kmtl evaluate", "RUN_DIR", "DATA", "--json",
                  "--data-dir"]),
    ("predict", ["usage: kmtl predict", "RUN_DIR INPUT OUTPUT"]),
    ("export", ["usage: kmtl export", "RUN_DIR", "--export-dir"]),
    ("compare", ["usage: kmtl compare", "config", "--seeds", "--data-dir",
                 "--output-dir", "--epochs", "compare.seeds"]),
])
def test_command_help(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


# === train ===


def test_train_prints_the_run_directory_last(trained, run_dir):
    lines = trained["stdout"].strip().splitlines()
    assert lines[-1] == f"Run directory: {run_dir}"
    assert run_dir.parent == trained["runs"]
    assert run_dir.name.startswith("penguins-")
    assert f"SavedModel for TF Serving: {trained['export'] / '1'}" in lines
    assert "Traceback" not in trained["stderr"]


def test_train_writes_the_run_directory(run_dir, trained):
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.yaml", "logs", "metrics.json", "model.keras", "split.json"]
    # The example's MMoE has sharing diagnostics: a TensorBoard run of their own.
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == [
        "diagnostics", "train", "validation"]
    assert existing_versions(trained["export"]) == [1]
    assert (trained["export"] / "1" / "saved_model.pb").is_file()


def test_saved_config_is_resolved_with_fitted_tasks(run_dir, trained):
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolve_config(saved) == saved
    assert saved["training"]["epochs"] == EPOCHS
    assert saved["export"]["dir"] == str(trained["export"])
    tasks = {t["name"]: t for t in saved["tasks"]}
    assert list(tasks) == ["species", "sex", "body_mass_g"]
    assert tasks["species"]["classes"] == CLASSES
    assert tasks["sex"]["positive"] == "female"
    # The regression scale is fitted on the training split only.
    train, validation, test = load_splits(saved)
    assert len(train) + len(validation) + len(test) == 344
    labels = train["body_mass_g"].dropna().to_numpy()
    assert tasks["body_mass_g"]["target_mean"] == [pytest.approx(labels.mean())]
    assert tasks["body_mass_g"]["target_std"] == [pytest.approx(labels.std())]


def test_metrics_json_is_split_task_metric(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics) == ["validation", "test"]
    for split in metrics.values():
        assert list(split) == ["species", "sex", "body_mass_g"]
        for task, values in split.items():
            assert set(values) == TASK_METRICS[task]
        assert 0 <= split["species"]["accuracy"] <= 1
        assert 0 <= split["sex"]["auc"] <= 1
        assert 0 < split["body_mass_g"]["mae"] <= split["body_mass_g"]["rmse"]


def test_tensorboard_logs_have_per_task_tags(run_dir):
    # Static weights: no `<task>_weight` tags (the config states them).
    per_task = {f"{task}_{metric}" for task, names in TASK_METRICS.items()
                for metric in names}
    train = read_tensorboard(run_dir / "logs" / "train")
    assert set(train) == {f"epoch_{name}" for name in per_task} | {
        "epoch_loss", "epoch_learning_rate"}
    validation = read_tensorboard(run_dir / "logs" / "validation")
    assert set(validation) == (
        {f"epoch_{name}" for name in per_task | {"loss"}}
        | {f"evaluation_{name}_vs_iterations" for name in per_task | {"loss"}})
    for events in list(train.values()) + list(validation.values()):
        assert len(events) == EPOCHS
    assert [step for step, _ in train["epoch_species_loss"]] == list(range(EPOCHS))
    learning_rates = [value for _, value in train["epoch_learning_rate"]]
    assert learning_rates == pytest.approx([0.005] * EPOCHS)


def test_metrics_json_matches_the_best_validation_epoch(run_dir):
    """EarlyStopping restores the best weights, so metrics.json's validation
    numbers are the ones TensorBoard logged for the epoch of lowest val loss."""
    validation = read_tensorboard(run_dir / "logs" / "validation")
    losses = [value for _, value in validation["epoch_loss"]]
    best = int(np.argmin(losses))
    metrics = json.loads((run_dir / "metrics.json").read_text())["validation"]
    for task, values in metrics.items():
        for metric, value in values.items():
            logged = validation[f"epoch_{task}_{metric}"][best][1]
            assert value == pytest.approx(logged, rel=1e-4, abs=1e-5), (task, metric)


def test_second_train_creates_a_new_run_directory(trained, run_dir, capsys):
    before = snapshot(run_dir)
    code, out, err = run_main(
        capsys, "train", EXAMPLE, "--output-dir", trained["runs"], "--export-dir",
        trained["export"], "--epochs", 1)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("Run directory: ")
    second = Path(last.removeprefix("Run directory: "))
    assert second != run_dir
    assert second.parent == trained["runs"]
    assert (second / "model.keras").is_file()
    assert snapshot(run_dir) == before
    assert existing_versions(trained["export"]) == [1, 2]
    assert yaml.safe_load((second / "config.yaml").read_text())["training"][
        "epochs"] == 1


def test_saved_config_lists_the_features_used(run_dir):
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["features"]["numeric"] == ["bill_length_mm", "bill_depth_mm",
                                            "flipper_length_mm", "year"]
    assert saved["features"]["categorical"] == ["island"]


def test_split_json_holds_the_row_positions_of_each_split(run_dir):
    """The stored positions are the rows `data.split` cut from the 344
    penguins: each row in one split, and `load_splits` with the saved config
    gives the same rows."""
    record = json.loads((run_dir / "split.json").read_text())
    penguins = kmtl.datasets.load_penguins()
    positions = [record[s]["indices"] for s in ("train", "validation", "test")]
    assert sorted(sum(positions, [])) == list(range(344))
    assert [len(p) for p in positions] == [record[s]["rows"] for s in (
        "train", "validation", "test")] == [240, 52, 52]
    assert record["source"]["rows"] == 344
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    for frame, rows in zip(load_splits(saved), positions):
        pd.testing.assert_frame_equal(
            frame, penguins.iloc[rows].reset_index(drop=True))


# === evaluate ===


def test_evaluate_run_dir_reproduces_metrics_json(run_dir, capsys):
    code, out, err = run_main(capsys, "evaluate", run_dir, "--json")
    assert code == 0, err
    table, _, text = out.partition("\n{")
    lines = table.strip().splitlines()
    assert lines[0].split() == ["split", "task", "loss", "accuracy", "auc", "mae",
                                "rmse"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [split, task] for split in ("validation", "test")
        for task in ("species", "sex", "body_mass_g")]
    printed = json.loads("{" + text)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert printed.keys() == saved.keys()
    for split in saved:
        for task in saved[split]:
            assert printed[split][task] == pytest.approx(saved[split][task],
                                                         rel=1e-5, abs=1e-6)
    assert lines[1].split()[2] == f"{saved['validation']['species']['loss']:.4f}"


def test_evaluate_uses_the_stored_split_not_the_config_seed(run_dir, tmp_path,
                                                           capsys):
    """Another split seed in the run's config.yaml would cut other rows; evaluate
    reads the stored rows, so its test metrics stay those of training."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    stored_test = load_splits(config)[2]
    config["data"]["split"]["seed"] = 1
    assert not load_splits(config)[2].equals(stored_test)
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    code, out, err = run_main(capsys, "evaluate", copy, "--json")
    assert code == 0, err
    printed = json.loads("{" + out.partition("\n{")[2])
    saved = json.loads((run_dir / "metrics.json").read_text())
    for split in ("validation", "test"):
        for task, values in saved[split].items():
            assert printed[split][task] == pytest.approx(values, rel=1e-5,
                                                         abs=1e-6)


def test_evaluate_a_run_directory_without_split_json(run_dir, tmp_path, capsys):
    """A run directory from before splits were stored: the split is cut again
    with data.split (the same seed gives the same rows), and a note says so."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "split.json").unlink()
    code, out, err = run_main(capsys, "evaluate", copy, "--json")
    assert code == 0, err
    assert err.startswith(f"kmtl evaluate: note: {copy} has no split.json")
    printed = json.loads("{" + out.partition("\n{")[2])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert printed["test"]["species"] == pytest.approx(saved["test"]["species"],
                                                       rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("present, missing", [
    ((), "model.keras"), (("model.keras",), "config.yaml")])
def test_evaluate_a_directory_that_is_not_a_run(tmp_path, capsys, present,
                                                missing):
    for name in present:
        (tmp_path / name).write_bytes(b"")
    code, out, err = run_main(capsys, "evaluate", tmp_path)
    assert code == 2 and out == ""
    assert err.strip() == (f"kmtl evaluate: error: {str(tmp_path)!r} is not a kmtl "
                           f"run directory: {missing} is missing. Pass the "
                           f"directory `kmtl train` printed last.")


@pytest.mark.parametrize("command", ["evaluate", "export", "predict"])
@pytest.mark.parametrize("damage, message", [
    ("model", "model.keras' is damaged: it is no complete .keras (zip) file."),
    ("config", "config.yaml' is not valid YAML"),
])
def test_a_damaged_run_directory_is_exit_2_naming_the_file(
        run_dir, tmp_path, capsys, command, damage, message):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    if damage == "model":
        data = (copy / "model.keras").read_bytes()
        (copy / "model.keras").write_bytes(data[: len(data) // 2])
    else:
        (copy / "config.yaml").write_text("tasks: [unclosed\n")
    arguments = {"evaluate": [], "export": ["--export-dir", tmp_path / "exported"],
                 "predict": [tmp_path / "in.csv", tmp_path / "out.csv"]}[command]
    kmtl.datasets.load_penguins()[FEATURE_COLUMNS].to_csv(tmp_path / "in.csv",
                                                          index=False)
    code, _, err = run_main(capsys, command, copy, *arguments)
    assert code == 2
    assert err.startswith(f"kmtl {command}: error: ") and message in err
    assert "Traceback" not in err and "train again" in err.lower()
    assert not (tmp_path / "exported").exists() and not (tmp_path / "out.csv").exists()


def test_evaluate_on_a_csv_matches_hand_computed_metrics(run_dir, model,
                                                         penguins_csv, capsys):
    code, out, err = run_main(capsys, "evaluate", run_dir, penguins_csv, "--json")
    assert code == 0, err
    table, _, text = out.partition("\n{")
    assert [line.split()[:2] for line in table.strip().splitlines()[1:]] == [
        ["penguins.csv", task] for task in ("species", "sex", "body_mass_g")]
    metrics = json.loads("{" + text)["penguins.csv"]

    frame = pd.read_csv(penguins_csv)
    predicted = model.predict(raw_inputs(model, frame), verbose=0)
    species = predicted["species"]
    codes = frame["species"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    assert metrics["species"]["accuracy"] == pytest.approx(
        np.mean(species.argmax(axis=1) == codes), abs=1e-6)
    assert metrics["species"]["loss"] == pytest.approx(
        -np.mean(np.log(species[np.arange(len(codes)), codes])), rel=1e-4)

    sex = frame["sex"].notna().to_numpy()
    female = (frame["sex"][sex] == "female").to_numpy()
    p_female = predicted["sex"][sex, 0]
    assert metrics["sex"]["accuracy"] == pytest.approx(
        np.mean((p_female > 0.5) == female), abs=1e-6)
    assert metrics["sex"]["auc"] == pytest.approx(roc_auc_score(female, p_female),
                                                  abs=0.01)

    mass = frame["body_mass_g"].notna().to_numpy()
    error = predicted["body_mass_g"][mass, 0] - frame["body_mass_g"][mass].to_numpy()
    task = {t.name: t for t in model.tasks}["body_mass_g"]
    assert metrics["body_mass_g"]["mae"] == pytest.approx(np.abs(error).mean(),
                                                          rel=1e-5)
    assert metrics["body_mass_g"]["rmse"] == pytest.approx(
        np.sqrt(np.mean(error**2)), rel=1e-5)
    # The regression loss is taken on the standardized scale.
    assert metrics["body_mass_g"]["loss"] == pytest.approx(
        np.mean((error / task.target_std[0]) ** 2), rel=1e-4)


# === predict ===


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_writes_one_column_per_task_output(run_dir, model, trained, suffix,
                                                   capsys):
    frame = kmtl.datasets.load_penguins()[FEATURE_COLUMNS]
    source = trained["root"] / f"features{suffix}"
    target = trained["root"] / f"predictions{suffix}"
    if suffix == ".csv":
        frame.to_csv(source, index=False)
    else:
        frame.to_parquet(source, index=False)
    code, out, err = run_main(capsys, "predict", run_dir, source, target)
    assert code == 0, err
    assert out.strip() == f"Wrote 344 rows x 6 columns to {target}"
    assert not Path(f"{target}.partial").exists()

    written = (pd.read_csv(target) if suffix == ".csv" else pd.read_parquet(target))
    assert list(written.columns) == PREDICTION_COLUMNS
    assert len(written) == len(frame) == 344
    expected = model.predict(raw_inputs(model, frame), verbose=0)
    probabilities = written[PREDICTION_COLUMNS[1:4]].to_numpy()
    np.testing.assert_allclose(probabilities, expected["species"], rtol=1e-6,
                               atol=1e-7)
    assert list(written["species"]) == [CLASSES[i] for i in
                                        expected["species"].argmax(axis=1)]
    np.testing.assert_allclose(written["sex"], expected["sex"][:, 0], rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_allclose(written["body_mass_g"], expected["body_mass_g"][:, 0],
                               rtol=1e-6)
    assert not written.isna().any().any()


@pytest.mark.parametrize("where, message", [
    ("missing/predictions.csv", "does not exist; create it"),
    ("folder", "is a directory; give a file path"),
], ids=["missing_folder", "directory"])
def test_predict_to_an_unusable_path_names_it_and_writes_nothing(
        run_dir, trained, tmp_path, capsys, where, message):
    frame = kmtl.datasets.load_penguins()[FEATURE_COLUMNS]
    source = tmp_path / "features.csv"
    frame.to_csv(source, index=False)
    (tmp_path / "folder").mkdir()
    target = tmp_path / where
    code, _, err = run_main(capsys, "predict", run_dir, source, target)
    assert code == 2
    assert message in err and "kmtl predict: error:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.csv", "folder"]
    assert not list((tmp_path / "folder").iterdir())


# === export ===


def test_export_twice_gives_versions_1_then_2(run_dir, trained, capsys):
    base = trained["root"] / "exported"
    code, out, err = run_main(capsys, "export", run_dir, "--export-dir", base)
    assert code == 0, err
    assert out.strip() == f"SavedModel for TF Serving: {base / '1'}"
    first = snapshot(base / "1")
    assert "saved_model.pb" in first

    code, out, err = run_main(capsys, "export", run_dir, "--export-dir", base)
    assert code == 0, err
    assert out.strip() == f"SavedModel for TF Serving: {base / '2'}"
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert snapshot(base / "1") == first


# === config-schema ===


def _resolve(schema, node):
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def _unknown_keys(schema, node, value, path=""):
    """Keys of `value` that the schema does not declare (paths)."""
    node = _resolve(schema, node)
    if isinstance(value, list) and "items" in node:
        return [k for item in value
                for k in _unknown_keys(schema, node["items"], item, path + "[]")]
    if not isinstance(value, dict) or "properties" not in node:
        return []
    unknown = []
    for key, item in value.items():
        if key not in node["properties"]:
            if node.get("additionalProperties") is False:
                unknown.append(f"{path}.{key}")
            continue
        unknown += _unknown_keys(schema, node["properties"][key], item,
                                 f"{path}.{key}")
    return unknown


def test_config_schema_prints_the_json_schema(capsys):
    code, out, err = run_main(capsys, "config-schema")
    assert code == 0, err
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["tasks"]
    training = _resolve(schema, schema["properties"]["training"])
    assert training["additionalProperties"] is False
    # Null by default: chosen from the number of training rows.
    epochs = training["properties"]["epochs"]
    assert epochs["default"] is None
    assert epochs["anyOf"] == [{"type": "integer", "minimum": 1}, {"type": "null"}]
    assert training["properties"]["mixed_precision"]["type"] == "boolean"
    assert training["properties"]["learning_rate"]["anyOf"][0] == {
        "type": "number", "exclusiveMinimum": 0}
    split = _resolve(schema, _resolve(schema, schema["properties"]["data"])[
        "properties"]["split"])
    assert split["properties"]["method"]["default"] == "stratified"
    assert split["properties"]["method"]["enum"] == [
        "random", "per_task", "stratified", "ordered", "group"]
    # Every key of every example config is declared: an editor completes them.
    for path in sorted(REPO.glob("examples/*.yaml")):
        assert _unknown_keys(schema, schema, yaml.safe_load(path.read_text())) == []
    assert _unknown_keys(schema, schema, {"training": {"epoch": 3}}) == [
        ".training.epoch"]


# === compare (the run itself: tests/runs/test_compare.py) ===


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_compare_seeds_must_be_positive(capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(EXAMPLE), "--seeds", value])
    assert exit_info.value.code == 2
    assert f"--seeds: must be a positive integer, got '{value}'" in (
        capsys.readouterr().err)


def test_compare_epochs_override_is_validated(tmp_path, capsys):
    code, out, err = run_main(capsys, "compare", EXAMPLE, "--epochs", 0,
                              "--output-dir", tmp_path / "runs")
    assert code == 2 and out == ""
    assert err.strip() == ("kmtl compare: error: training.epochs must be a positive "
                           "integer. Received: 0 (from --epochs)")
    assert not (tmp_path / "runs").exists()


def test_compare_config_error_exits_2(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(EXAMPLE.read_text() + "compare: {average: median}\n")
    code, out, err = run_main(capsys, "compare", config, "--output-dir",
                              tmp_path / "runs")
    assert code == 2 and out == ""
    assert err.strip() == ("kmtl compare: error: compare.average: unknown average "
                           "'median'. Use one of ('task', 'flat').")
    assert not (tmp_path / "runs").exists()


def test_predict_warns_when_a_categorical_input_is_mostly_unseen(run_dir, trained,
                                                                  capsys):
    # Islands sent as codes where training had names: all unknown categories.
    frame = kmtl.datasets.load_penguins()[FEATURE_COLUMNS].iloc[:10].copy()
    frame["island"] = [1, 2] * 5
    source = trained["root"] / "codes.csv"
    frame.to_csv(source, index=False)
    with pytest.warns(UserWarning, match=r"Feature 'island': 100% of its input "
                                         r"values never occur in the training "
                                         r"split.*codes where training had "
                                         r"names"):
        code, _, err = run_main(capsys, "predict", run_dir, source,
                                trained["root"] / "codes_predictions.csv")
    assert code == 0, err
