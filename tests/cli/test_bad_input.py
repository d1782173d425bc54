"""Bad input at the edges: every mistake gives exit code 2 and a message that names
the key, column or value, and nothing written earlier is touched.

Each case runs `kmtl train` in-process (`kmtl.cli.main`, what the script calls)
against a workspace that already holds one good run directory and one exported
version; one case runs the installed script to check the real exit code.
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import yaml
from helpers import snapshot

import kmtl
from kmtl.cli import main
from kmtl.errors import DataError

EARLIER_RUN = "earlier"




def changes(before, after):
    """Paths added, removed or modified between two snapshots (empty: none)."""
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "modified": sorted(k for k in set(before) & set(after)
                           if before[k] != after[k]),
    }


NO_CHANGES = {"added": [], "removed": [], "modified": []}


def kmtl_command():
    """The venv's `kmtl` script, else `python -m kmtl.cli`."""
    script = Path(sys.executable).with_name("kmtl")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "kmtl.cli"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Train, validation and test CSVs cut from penguins (every species in each),
    a good config, and one successful run: `runs/<run>` and `sm/1`."""
    root = tmp_path_factory.mktemp("bad_input")
    frame = kmtl.datasets.load_penguins().dropna(subset=["bill_length_mm"])
    frame = frame.reset_index(drop=True)
    parts = {"train": frame[frame.index % 5 >= 2], "validation": frame[
        frame.index % 5 == 0], "test": frame[frame.index % 5 == 1]}
    for name, part in parts.items():
        assert set(part["species"]) == {"Adelie", "Chinstrap", "Gentoo"}
        part.to_csv(root / f"{name}.csv", index=False)
    config = {
        "name": "bad_input",
        "data": {"train": str(root / "train.csv"),
                 "validation": str(root / "validation.csv"),
                 "test": str(root / "test.csv")},
        "features": {"numeric": ["bill_length_mm", "bill_depth_mm"],
                     "categorical": ["island"]},
        "tasks": [{"name": "species", "type": "multiclass"},
                  {"name": "sex", "type": "binary", "positive": "female"},
                  {"name": "body_mass_g", "type": "regression"}],
        "model": {"architecture": "shared_bottom", "options": {"units": [8]},
                  "tower_units": [4]},
        "training": {"epochs": 1, "batch_size": 64, "verbose": 0},
    }
    path = root / "good.yaml"
    path.write_text(yaml.safe_dump(config))
    runs, export = root / "runs", root / "sm"
    assert main(["train", str(path), "--output-dir", str(runs), "--export-dir",
                 str(export)]) == 0
    (run,) = runs.iterdir()
    run.rename(runs / EARLIER_RUN)
    assert sorted(os.listdir(export)) == ["1"]
    return {"root": root, "parts": parts, "config": config, "runs": runs,
            "export": export}


@pytest.fixture
def train_fails(workspace, tmp_path, capsys):
    """Returns `check(config, message parts...)`: trains with `config` (a dict, or
    YAML text) and asserts exit code 2, each part on stderr, and the workspace's
    run and export directories unchanged."""

    def check(config, *parts, output_dir=None, export_dir=None, args=()):
        runs = workspace["runs"] if output_dir is None else output_dir
        export = workspace["export"] if export_dir is None else export_dir
        path = tmp_path / "config.yaml"
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        before = snapshot(workspace["runs"]), snapshot(workspace["export"])
        capsys.readouterr()
        code = main(["train", str(path), "--output-dir", str(runs), "--export-dir",
                     str(export), *map(str, args)])
        out, err = capsys.readouterr()
        assert code == 2, (out[-2000:], err[-2000:])
        assert err.startswith("kmtl train: error: ")
        for part in parts:
            assert part in err
        assert changes(before[0], snapshot(workspace["runs"])) == NO_CHANGES
        assert changes(before[1], snapshot(workspace["export"])) == NO_CHANGES
        return err

    return check


def good_config(workspace):
    return copy.deepcopy(workspace["config"])


def write_csv(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


# === Config ===


def test_missing_tasks_key(workspace, train_fails):
    config = good_config(workspace)
    del config["tasks"]
    train_fails(config, "Missing required config key `tasks`")


def test_unknown_top_level_key(workspace, train_fails):
    config = good_config(workspace)
    config["trainig"] = {"epochs": 3}
    train_fails(config, "Unknown config key(s) ['trainig'] at the top level",
                "'training'")


def test_unknown_nested_key(workspace, train_fails):
    config = good_config(workspace)
    config["model"]["tower_unit"] = [4]
    train_fails(config, "Unknown config key(s) ['tower_unit'] in `model`",
                "'tower_units'")


def test_unknown_architecture(workspace, train_fails):
    config = good_config(workspace)
    config["model"]["architecture"] = "mmoee"
    train_fails(config, "Unknown architecture 'mmoee'", "'mmoe'", "'shared_bottom'")


def test_unknown_task_type(workspace, train_fails):
    config = good_config(workspace)
    config["tasks"][1]["type"] = "classification"
    train_fails(config, "Task 'sex'", "unknown type 'classification'", "'binary'")


# The loose values that used to pass: each is refused with its key path and
# value, before anything is read or written.
@pytest.mark.parametrize("section, key, value, message", [
    ("training", "epochs", True,
     "training.epochs must be a positive integer. Received: True"),
    ("training", "epochs", 2.5,
     "training.epochs must be a positive integer. Received: 2.5"),
    ("training", "mixed_precision", "false",
     "training.mixed_precision must be true or false. Received: 'false' (a "
     "string: write it without quotes)"),
    ("training", "learning_rate", -0.01,
     "training.learning_rate must be a positive number, e.g. 0.001. Received: "
     "-0.01"),
    ("training", "learning_rate", "fast",
     "training.learning_rate must be a positive number, e.g. 0.001. Received: "
     "'fast'"),
    ("training", "early_stopping_patience", -1,
     "training.early_stopping_patience must be an integer >= 0 (epochs without "
     "a lower validation loss before stopping). Received: -1"),
    ("export", "enabled", "no",
     "export.enabled must be true or false. Received: 'no' (a string: write it "
     "without quotes)"),
], ids=["epochs_true", "epochs_float", "mixed_precision_string",
        "negative_learning_rate", "learning_rate_word", "negative_patience",
        "export_enabled_string"])
def test_loose_value_is_refused(workspace, train_fails, tmp_path, section, key,
                                value, message):
    config = good_config(workspace)
    config.setdefault(section, {})[key] = value
    runs, export = tmp_path / "new_runs", tmp_path / "new_sm"
    err = train_fails(config, message, output_dir=runs, export_dir=export)
    assert err == f"kmtl train: error: {message}\n"
    assert not runs.exists() and not export.exists()


def test_several_problems_are_listed_together(workspace, train_fails):
    config = good_config(workspace)
    config["training"].update(epochs=True, mixed_precision="false")
    err = train_fails(config)
    assert err.splitlines()[1:] == [
        "training.mixed_precision must be true or false. Received: 'false' (a "
        "string: write it without quotes)"]
    assert err.splitlines()[0].endswith(
        "training.epochs must be a positive integer. Received: True")


@pytest.mark.parametrize("value", ["0", "-2"])
def test_epochs_override_goes_through_validation(workspace, train_fails,
                                                 tmp_path, value):
    runs, export = tmp_path / "new_runs", tmp_path / "new_sm"
    train_fails(good_config(workspace), "training.epochs must be a positive "
                f"integer. Received: {value} (from --epochs)", output_dir=runs,
                export_dir=export, args=["--epochs", value])
    assert not runs.exists() and not export.exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", "a\\b", "..", "."])
def test_name_that_is_not_a_folder_name(workspace, train_fails, tmp_path, name):
    config = good_config(workspace)
    config["name"] = name
    before = sorted(os.listdir(workspace["root"]))
    train_fails(config, "name must be a folder name without '/' or '\\'",
                f"Received: {name!r}")
    assert sorted(os.listdir(workspace["root"])) == before
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_data_error_leaves_no_export_folder(workspace, train_fails, tmp_path):
    """The export folder is made when the model is exported, not when the
    config is read: a run that fails before training leaves none."""
    config = good_config(workspace)
    config["data"]["train"] = str(tmp_path / "nowhere.csv")
    runs, export = tmp_path / "new_runs", tmp_path / "deep" / "new_sm"
    train_fails(config, "Data file not found", output_dir=runs, export_dir=export)
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_config_file_not_found(workspace, tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    before = snapshot(workspace["runs"])
    assert main(["train", str(missing), "--output-dir", str(workspace["runs"])]) == 2
    assert f"Config file not found: {str(missing)!r}" in capsys.readouterr().err
    assert changes(before, snapshot(workspace["runs"])) == NO_CHANGES


def test_config_that_is_not_yaml(train_fails):
    train_fails("tasks: [unclosed\n", "is not valid YAML")


# === Data ===


@pytest.mark.parametrize("split_files", [True, False],
                         ids=["split_files", "cut_by_data_split"])
def test_target_column_absent(workspace, train_fails, split_files):
    config = good_config(workspace)
    config["tasks"][2]["target"] = "mass_g"
    if not split_files:
        config["data"] = {"train": config["data"]["train"]}
    train_fails(config, "Task 'body_mass_g'", "['mass_g']", "not found",
                "body_mass_g")


def test_task_without_any_label(workspace, train_fails, tmp_path):
    config = good_config(workspace)
    frame = workspace["parts"]["train"].assign(sex=None)
    config["data"]["train"] = write_csv(tmp_path, "train.csv", frame)
    train_fails(config, "Task 'sex'", "no row of the training data has a label",
                "['sex']")


def test_label_not_in_declared_classes(workspace, train_fails):
    config = good_config(workspace)
    config["tasks"][0]["classes"] = ["Adelie", "Gentoo"]
    train_fails(config, "Task 'species'", "'Chinstrap'",
                "['Adelie', 'Gentoo']")


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_text_in_a_numeric_feature(workspace, train_fails, tmp_path, split):
    config = good_config(workspace)
    frame = workspace["parts"][split].astype({"bill_depth_mm": object})
    frame.iloc[3, frame.columns.get_loc("bill_depth_mm")] = "deep"
    config["data"][split] = write_csv(tmp_path, f"{split}.csv", frame)
    train_fails(config, "Feature 'bill_depth_mm'", "'deep'", "numeric")


@pytest.mark.parametrize("content, message", [
    (b"", "as a table"),
    (b"species,island,bill_length_mm,bill_depth_mm,body_mass_g,sex\n", "no rows"),
], ids=["zero_bytes", "header_only"])
def test_empty_data_file(workspace, train_fails, tmp_path, content, message):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    config = good_config(workspace)
    config["data"]["train"] = str(path)
    train_fails(config, repr(str(path)), message)


@pytest.mark.parametrize("name", ["garbage.csv", "garbage.parquet"])
def test_binary_garbage_data_file(workspace, train_fails, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 40)
    config = good_config(workspace)
    config["data"]["train"] = str(path)
    train_fails(config, f"Cannot read {str(path)!r} as a table")


def test_data_file_that_is_a_directory(workspace, train_fails, tmp_path):
    path = tmp_path / "train.csv"
    path.mkdir()
    config = good_config(workspace)
    config["data"]["validation"] = str(path)
    train_fails(config, repr(str(path)))


def test_missing_data_file(workspace, train_fails, tmp_path):
    config = good_config(workspace)
    config["data"]["train"] = str(tmp_path / "nowhere.csv")
    train_fails(config, "Data file not found", "nowhere.csv")


# === Output locations ===


def test_output_dir_under_a_regular_file(workspace, train_fails, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    train_fails(good_config(workspace), "Cannot create the output directory",
                repr(str(blocker / "runs")), "is not a directory",
                "Pass a writable --output-dir.", output_dir=blocker / "runs")
    assert blocker.read_text() == "not a directory"


def test_export_dir_under_a_regular_file(workspace, train_fails, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    train_fails(good_config(workspace), "Cannot create the export directory",
                repr(str(blocker / "sm")), export_dir=blocker / "sm")


def test_script_exits_with_code_2_and_no_traceback(workspace, tmp_path):
    config = good_config(workspace)
    del config["tasks"]
    path = tmp_path / "no_tasks.yaml"
    path.write_text(yaml.safe_dump(config))
    before = snapshot(workspace["runs"]), snapshot(workspace["export"])
    result = subprocess.run(
        kmtl_command() + ["train", str(path), "--output-dir", str(workspace["runs"]),
                          "--export-dir", str(workspace["export"])],
        cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "kmtl train: error: Missing required config key `tasks`" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert changes(before[0], snapshot(workspace["runs"])) == NO_CHANGES
    assert changes(before[1], snapshot(workspace["export"])) == NO_CHANGES


# === Export ===


def test_failed_export_leaves_no_partial_version(workspace, tmp_path, monkeypatch):
    model = keras.saving.load_model(workspace["runs"] / EARLIER_RUN / "model.keras")
    base = tmp_path / "sm"
    assert kmtl.export_saved_model(model, base) == str(base / "1")
    before = snapshot(base)

    calls = []

    def write_out(self, filepath, **kwargs):
        calls.append(filepath)
        os.makedirs(os.path.join(filepath, "variables"), exist_ok=True)
        with open(os.path.join(filepath, "saved_model.pb"), "wb") as handle:
            handle.write(b"half a model")
        raise OSError(28, "No space left on device")

    # `keras.export.ExportArchive()` returns the backend's subclass, which
    # inherits `write_out` from elsewhere: patch the class actually used.
    archive_class = type(keras.export.ExportArchive())
    monkeypatch.setattr(archive_class, "write_out", write_out)
    with pytest.raises(DataError, match=r"Cannot write the export into .*sm': No "
                                        r"space left on device\. The partial export "
                                        r"was removed"):
        kmtl.export_saved_model(model, base)
    assert len(calls) == 1 and Path(calls[0]).parent == base
    assert os.listdir(base) == ["1"]
    assert snapshot(base) == before

    monkeypatch.undo()
    assert kmtl.export_saved_model(model, base) == str(base / "2")
    assert snapshot(base / "1") == {k.removeprefix("1/"): v for k, v in
                                    before.items() if k.startswith("1/")}


# === Text columns ===


@pytest.mark.parametrize("values, message", [
    ([None] * 3, "Text feature 'notes' has no text in the training data"),
    ([12.5] * 3, "Text feature 'notes' holds float64 values, not text"),
    (["!!", "?", "..."], "Text feature(s) 'notes': the vocabulary is empty"),
], ids=["all_missing", "numbers", "empty_vocabulary"])
def test_unusable_text_column_is_refused_naming_it(workspace, train_fails,
                                                   tmp_path, values, message):
    config = good_config(workspace)
    for split, part in workspace["parts"].items():
        part = part.copy()
        part["notes"] = (values * len(part))[:len(part)]
        config["data"][split] = write_csv(tmp_path, f"{split}.csv", part)
    config["features"]["text"] = ["notes"]
    runs, export = tmp_path / "new_runs", tmp_path / "new_sm"
    train_fails(config, message, output_dir=runs, export_dir=export)
    assert not runs.exists() and not export.exists()


def test_bad_text_setting_names_the_key(workspace, train_fails):
    config = good_config(workspace)
    config["features"]["text"] = [{"columns": ["island"], "encoder": "lstm"}]
    config["features"]["categorical"] = []
    train_fails(config, "features.text: Text feature 'island': encoder must be "
                        "one of ('bag', 'embedding', 'transformer', 'pretrained')")
