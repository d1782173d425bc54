"""SavedModel export for TensorFlow Serving: versions, the `serving_default`
signature, servability without kmtl, `saved_model_cli`, the REST row format, and
the Census-Income files.

Serve an export with:

    tensorflow_model_server --rest_api_port=8501 --model_name=<MODEL_NAME> \\
        --model_base_path=<ABSOLUTE_EXPORT_BASE>

    curl -d @body.json http://localhost:8501/v1/models/<MODEL_NAME>:predict

where `<ABSOLUTE_EXPORT_BASE>` is the directory holding the numbered versions and
`body.json` is `REST_BODY`.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import FRESH_PROCESS
from helpers import raw_columns
from helpers import snapshot

import kmtl
from kmtl.data import make_dataset
from kmtl.datasets import CENSUS_CATEGORICAL
from kmtl.datasets import CENSUS_NUMERIC
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import load_census_income
from kmtl.datasets import load_penguins
from kmtl.datasets import penguin_tasks
from kmtl.datasets.census_income import CENSUS_FILES
from kmtl.datasets.census_income import census_files
from kmtl.errors import DataError
from kmtl.features import resolve_features
from kmtl.models.export import existing_versions
from kmtl.tasks import Task

REPO = Path(__file__).resolve().parents[2]

# The body of a TF Serving REST predict request in the row ("instances") format:
# one object per example, one key per model input. POST it to
# http://<host>:8501/v1/models/<MODEL_NAME>:predict; the answer is
# {"predictions": [{"species": [3 probabilities], "sex": [P(female)],
#   "body_mass_g": [grams]}, ...]}, one object per instance.
# The request body the serving guide documents, read from the file it quotes.
REST_BODY = (REPO / "examples" / "penguins_request.json").read_text()
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "year", "island"]
OUTPUT_UNITS = {"species": 3, "sex": 1, "body_mass_g": 1}
# Rows 0-2 are complete; row 3 misses every measurement (NaN inputs); 152 and 276
# are a Gentoo and a Chinstrap.
ROWS = [0, 1, 2, 3, 152, 276]



def tool(name):
    """A console script of the running venv (`saved_model_cli`, ...)."""
    path = Path(sys.executable).with_name(name)
    if not path.is_file():
        pytest.skip(f"{name} is not installed next to {sys.executable}")
    return str(path)


def quiet_env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}




def keras_predict(model, columns):
    """`model.predict` on `(rows,)` columns (the model takes `(rows, 1)`)."""
    inputs = {name: tf.constant(np.asarray(values)[:, None])
              for name, values in columns.items()}
    return model.predict(inputs, verbose=0)


def signature_inputs(columns, signature):
    return {name: tf.constant(columns[name], dtype=spec.dtype)
            for name, spec in signature.structured_input_signature[1].items()}


def rest_to_inputs(body, signature):
    """The TF Serving row format: every instance names every input; the values of
    one input across instances are stacked into a batch of the input's dtype."""
    instances = json.loads(body)["instances"]
    specs = signature.structured_input_signature[1]
    for instance in instances:
        assert set(instance) == set(specs)
    return {name: tf.constant([instance[name] for instance in instances],
                              dtype=spec.dtype)
            for name, spec in specs.items()}


def rest_response(outputs):
    """The row-format answer TF Serving builds from the signature's outputs."""
    rows = len(next(iter(outputs.values())))
    return {"predictions": [{name: value[i].tolist() for name, value in
                             outputs.items()} for i in range(rows)]}


@pytest.fixture(scope="module")
def penguins():
    return load_penguins()


@pytest.fixture(scope="module")
def model(penguins):
    """A small MMoE model on the penguins, trained for three epochs."""
    keras.utils.set_random_seed(0)
    tasks = penguin_tasks()
    for task in tasks:
        task.fit(penguins)
    targets = {c for t in tasks for c in t.target_columns}
    features = resolve_features(penguins, exclude=targets, **PENGUIN_FEATURES)
    for feature in features:
        feature.fit(penguins)
    model = kmtl.build_model(features, tasks, "mmoe", num_experts=2,
                             expert_units=[8], tower_units=[4])
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(make_dataset(penguins, features, tasks, 32, shuffle=True), epochs=3,
              verbose=0, shuffle=False)
    return model


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
    return tmp_path_factory.mktemp("export") / "penguins"


@pytest.fixture(scope="module")
def exported(model, export_base):
    return Path(kmtl.export_saved_model(model, export_base))


@pytest.fixture(scope="module")
def signature(exported):
    return tf.saved_model.load(str(exported)).signatures["serving_default"]


# === Versions ===


def test_versions_count_up_and_never_touch_earlier_ones(model, exported,
                                                       export_base):
    assert exported == export_base / "1"
    assert sorted(os.listdir(exported)) == [
        "assets", "fingerprint.pb", "saved_model.pb", "variables"]
    first = snapshot(exported)
    second = kmtl.export_saved_model(model, export_base)
    assert second == str(export_base / "2")
    assert existing_versions(export_base) == [1, 2]
    assert sorted(os.listdir(export_base)) == ["1", "2"]
    assert snapshot(exported) == first
    with pytest.raises(kmtl.ConfigError, match="Export version 1 exists already"):
        kmtl.export_saved_model(model, export_base, version=1)
    assert snapshot(exported) == first


def test_a_killed_exports_staging_is_cleaned_by_the_next(model, tmp_path):
    """A staging directory whose process is gone (and one of kmtl 0.3, without
    a pid) is removed by the next export; a running export's is kept."""
    from kmtl.models.export import STAGING_PREFIX

    base = tmp_path / "base"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = [f"{STAGING_PREFIX}pid{dead}-x1y2", f"{STAGING_PREFIX}1-oldstyle"]
    running = f"{STAGING_PREFIX}pid{os.getpid()}-a1b2"
    for name in [*stale, running]:
        (base / name / "variables").mkdir(parents=True)
    path = kmtl.export_saved_model(model, base)
    assert path == str(base / "1")
    assert sorted(os.listdir(base)) == [running, "1"]


def test_an_export_that_loses_the_race_for_a_version_takes_the_next(
        model, tmp_path, monkeypatch):
    """Two exports choose version 1 at once: the rename of the complete
    staging directory claims it, so the second takes 2 and version 1 is
    untouched (the failure of kmtl 0.3: `Directory not empty`)."""
    from kmtl.models import export as export_module

    base = tmp_path / "base"
    first = kmtl.export_saved_model(model, base)
    before = snapshot(first)
    looked = []
    real = export_module.existing_versions

    def stale_once(folder):
        # The second export looked before the first had renamed its version.
        looked.append(folder)
        return [] if len(looked) == 1 else real(folder)

    monkeypatch.setattr(export_module, "existing_versions", stale_once)
    monkeypatch.setattr(export_module.os.path, "exists",
                        lambda p, _exists=os.path.exists: False
                        if p == str(base / "1") and len(looked) == 1 else _exists(p))
    second = kmtl.export_saved_model(model, base)
    assert second == str(base / "2")
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert snapshot(first) == before


@pytest.mark.parametrize("failure", ["oserror", "tensorflow"])
def test_a_full_disk_is_a_data_error_that_changes_no_version(model, tmp_path,
                                                             monkeypatch, failure):
    """A full disk while the SavedModel is written: Python's own writes raise
    OSError(ENOSPC); TensorFlow's raise ResourceExhaustedError("<path>; No
    space left on device") (as measured on a 200 kB tmpfs). Either is a
    DataError naming the export directory and the fix; the partial staging
    directory is removed and version 1 keeps its bytes."""
    base = tmp_path / "base"
    first = kmtl.export_saved_model(model, base)
    before = snapshot(first)
    real_save = tf.saved_model.save

    def full_disk(obj, export_dir, **kwargs):
        # Something was written before the disk filled up.
        (Path(export_dir) / "variables").mkdir(parents=True, exist_ok=True)
        (Path(export_dir) / "variables" / "variables.index").write_bytes(b"x" * 64)
        target = os.path.join(export_dir, "saved_model.pb")
        if failure == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{target}; No space left on device")

    # ExportArchive.write_out writes with tf.saved_model.save.
    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    with pytest.raises(DataError) as error:
        kmtl.export_saved_model(model, base)
    message = str(error.value)
    assert f"Cannot write the export into {str(base)!r}: " in message
    assert "No space left on device" in message
    assert message.endswith("The partial export was removed and earlier versions "
                            "are unchanged; free disk space or choose another "
                            "export.dir.")
    assert sorted(os.listdir(base)) == ["1"]
    assert snapshot(first) == before
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    assert kmtl.export_saved_model(model, base) == str(base / "2")


def test_an_export_dir_that_is_a_file_is_a_data_error(model, tmp_path):
    path = tmp_path / "models"
    path.write_text("not a folder")
    with pytest.raises(DataError, match=re.escape(
            f"The export directory {str(path)!r} is a file, not a directory; "
            f"choose another export.dir.")):
        kmtl.export_saved_model(model, path)
    with pytest.raises(DataError, match=re.escape(
            f"Cannot create the export directory {str(path / 'penguins')!r}: "
            f"Not a directory")):
        kmtl.export_saved_model(model, path / "penguins")
    assert path.read_text() == "not a folder"


def test_version_directory_is_readable_by_the_model_server(exported, export_base):
    """A model server often runs as another user than the trainer: the version
    directory must get the same permissions as any directory made here."""
    reference = export_base / "made_by_mkdir"
    reference.mkdir()
    try:
        expected = stat.S_IMODE(reference.stat().st_mode)
    finally:
        reference.rmdir()
    assert oct(stat.S_IMODE(exported.stat().st_mode)) == oct(expected)


# === Signature ===


def test_saved_model_cli_show_lists_one_input_per_feature(exported):
    result = subprocess.run(
        [tool("saved_model_cli"), "show", "--dir", str(exported), "--all"],
        capture_output=True, text=True, env=quiet_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert set(re.findall(r"signature_def\['(\w+)'\]", text)) == {
        "serving_default", "__saved_model_init_op"}
    section = text.split("signature_def['serving_default']:")[1].split(
        "\n\n")[0]
    entries = re.findall(
        r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+"
        r"shape: (\([^)]*\))",
        section)
    inputs = {name: (dtype, shape) for kind, name, dtype, shape in entries
              if kind == "inputs"}
    outputs = {name: (dtype, shape) for kind, name, dtype, shape in entries
               if kind == "outputs"}
    assert inputs == {name: ("DT_STRING" if name == "island" else "DT_FLOAT", "(-1)")
                      for name in FEATURES}
    assert outputs == {name: ("DT_FLOAT", f"(-1, {units})")
                       for name, units in OUTPUT_UNITS.items()}
    assert "Method name is: tensorflow/serving/predict" in section


def test_fresh_tensorflow_process_serves_the_export(model, exported, penguins,
                                                    tmp_path):
    rows = penguins.iloc[ROWS]
    columns = raw_columns(model, rows)
    inputs_file = tmp_path / "inputs.json"
    inputs_file.write_text(json.dumps({k: v.tolist() for k, v in columns.items()}))
    script = tmp_path / "serve.py"
    script.write_text(FRESH_PROCESS)
    outputs_file = tmp_path / "outputs.npz"
    result = subprocess.run(
        [sys.executable, str(script), str(exported), str(inputs_file),
         str(outputs_file)],
        cwd=tmp_path, capture_output=True, text=True, env=quiet_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # `import tensorflow` itself imports keras (TF 2.16+), so only kmtl is checked.
    assert report["kmtl"] is False
    assert report["outputs"] == sorted(OUTPUT_UNITS)

    served = np.load(outputs_file)
    expected = keras_predict(model, columns)
    for name, units in OUTPUT_UNITS.items():
        assert served[name].shape == (len(ROWS), units)
        np.testing.assert_allclose(served[name], expected[name], rtol=1e-5,
                                   atol=1e-5)
    assert np.isfinite(served["body_mass_g"]).all()


def test_saved_model_cli_run_matches_predict(model, exported, tmp_path):
    columns = {"island": np.array(["Biscoe", "Dream"], dtype=object),
               "bill_length_mm": np.array([40.0, 46.5], dtype="float32"),
               "bill_depth_mm": np.array([18.0, 17.9], dtype="float32"),
               "flipper_length_mm": np.array([190.0, 192.0], dtype="float32"),
               "year": np.array([2008.0, 2007.0], dtype="float32")}
    # saved_model_cli (TF 2.21) reads --input_exprs with ast.literal_eval:
    # plain Python literals, not `np.array(...)` calls.
    exprs = ('island=[b"Biscoe",b"Dream"];bill_length_mm=[40.0,46.5];'
             "bill_depth_mm=[18.0,17.9];flipper_length_mm=[190.0,192.0];"
             "year=[2008.0,2007.0]")
    outdir = tmp_path / "outputs"
    result = subprocess.run(
        [tool("saved_model_cli"), "run", "--dir", str(exported), "--tag_set",
         "serve", "--signature_def", "serving_default", "--input_exprs", exprs,
         "--outdir", str(outdir)],
        capture_output=True, text=True, env=quiet_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(outdir)) == sorted(f"{n}.npy" for n in OUTPUT_UNITS)
    expected = keras_predict(model, columns)
    for name in OUTPUT_UNITS:
        np.testing.assert_allclose(np.load(outdir / f"{name}.npy"), expected[name],
                                   rtol=1e-5, atol=1e-5)


def test_rest_body_gives_the_predictions(model, signature):
    inputs = rest_to_inputs(REST_BODY, signature)
    assert {name: tensor.shape.as_list() for name, tensor in inputs.items()} == {
        name: [3] for name in FEATURES}
    outputs = {name: value.numpy() for name, value in signature(**inputs).items()}
    instances = json.loads(REST_BODY)["instances"]
    columns = {name: np.array([row[name] for row in instances],
                              dtype=object if name == "island" else "float32")
               for name in FEATURES}
    expected = keras_predict(model, columns)
    for name, units in OUTPUT_UNITS.items():
        assert outputs[name].shape == (3, units)
        np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-5,
                                   atol=1e-5)
    response = json.loads(json.dumps(rest_response(outputs)))
    assert len(response["predictions"]) == 3
    for prediction in response["predictions"]:
        assert set(prediction) == set(OUTPUT_UNITS)
        assert sum(prediction["species"]) == pytest.approx(1.0, abs=1e-5)
        assert 0 <= prediction["sex"][0] <= 1


def test_signature_batches_of_one_and_many(model, signature, penguins):
    """Same numbers whatever the batch size, including a single row."""
    columns = raw_columns(model, penguins)
    everything = signature(**signature_inputs(columns, signature))
    single = signature(**signature_inputs({k: v[5:6] for k, v in columns.items()},
                                          signature))
    expected = keras_predict(model, columns)
    for name in OUTPUT_UNITS:
        np.testing.assert_allclose(everything[name].numpy(), expected[name],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(single[name].numpy(), expected[name][5:6],
                                   rtol=1e-5, atol=1e-5)


# === Census-Income ===


@pytest.fixture(scope="module")
def census_folder():
    """The folder holding both Census-Income files; skips when they are absent."""
    folder = os.environ.get("KMTL_DATA_DIR") or str(
        REPO.parent / "shared" / "data" / "census-income")
    for candidate in (folder, os.path.join(folder, "census-income")):
        if all(os.path.isfile(os.path.join(candidate, name)) for name in CENSUS_FILES):
            return Path(candidate)
    pytest.skip(f"Census-Income files not found in {folder}")


@pytest.mark.census
def test_census_slice_trains_and_exports_int64_and_string_inputs(census_folder,
                                                                 tmp_path):
    train, validation, test = load_census_income(census_folder)
    assert (len(train), len(validation), len(test)) == (199523, 49881, 49881)
    train, validation = train.iloc[:3000], validation.iloc[:2000]

    keras.utils.set_random_seed(0)
    tasks = [Task("income", "binary"), Task("never_married", "binary")]
    for task in tasks:
        task.fit(train)
    features = resolve_features(train, CENSUS_NUMERIC, CENSUS_CATEGORICAL,
                                exclude={"income", "never_married"})
    for feature in features:
        feature.fit(train)
    model = kmtl.build_model(features, tasks, "mmoe", num_experts=3,
                             expert_units=[32], tower_units=[])
    model.compile(optimizer=keras.optimizers.Adam(0.003))
    model.fit(make_dataset(train, features, tasks, 64, shuffle=True), epochs=2,
              verbose=0, shuffle=False)
    logs = model.evaluate(make_dataset(validation, features, tasks, 512),
                          return_dict=True, verbose=0)
    assert logs["income_auc"] > 0.85
    assert logs["never_married_auc"] > 0.85

    path = kmtl.export_saved_model(model, tmp_path / "census")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    specs = serve.structured_input_signature[1]
    dtypes = {name: spec.dtype for name, spec in specs.items()}
    assert set(dtypes) == set(CENSUS_NUMERIC) | set(CENSUS_CATEGORICAL)
    assert dtypes["age"] == tf.float32
    assert dtypes["education"] == tf.string
    for name in ("det_ind_code", "det_occ_code", "own_or_self", "vet_benefits",
                 "year"):
        assert dtypes[name] == tf.int64
    rows = validation.iloc[:16]
    columns = raw_columns(model, rows)
    outputs = serve(**signature_inputs(columns, serve))
    expected = keras_predict(model, columns)
    for name in ("income", "never_married"):
        np.testing.assert_allclose(outputs[name].numpy(), expected[name], rtol=1e-5,
                                   atol=1e-5)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.census
def test_census_files_downloads_into_the_keras_cache(census_folder, tmp_path):
    origin = tmp_path / "mirror"
    origin.mkdir()
    for name in CENSUS_FILES:
        shutil.copyfile(census_folder / name, origin / name)
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    env = quiet_env(KERAS_HOME=str(keras_home))
    env.pop("KMTL_DATA_DIR", None)
    # Keras reads KERAS_HOME when it is imported, so this runs in a new process.
    code = ("import json, sys\n"
            "from kmtl.datasets.census_income import census_files\n"
            "print(json.dumps(census_files(data_dir=None, origin=sys.argv[1])))\n")
    result = subprocess.run([sys.executable, "-c", code, f"file://{origin}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    paths = json.loads(result.stdout.strip().splitlines()[-1])
    assert [Path(p).name for p in paths] == list(CENSUS_FILES)
    for path in paths:
        assert Path(path).is_file()
        assert Path(path).parent == keras_home / "kmtl"
        assert sha256(path) == CENSUS_FILES[Path(path).name]


def test_census_files_rejects_a_damaged_file(tmp_path, monkeypatch):
    monkeypatch.delenv("KMTL_DATA_DIR", raising=False)
    damaged = tmp_path / "census-income.data.gz"
    damaged.write_bytes(b"these are not the census bytes")
    with pytest.raises(DataError, match="sha256") as error:
        census_files(data_dir=str(tmp_path))
    assert str(damaged) in str(error.value)
    assert CENSUS_FILES["census-income.data.gz"] in str(error.value)


def test_census_files_names_a_failed_download(tmp_path, monkeypatch):
    monkeypatch.delenv("KMTL_DATA_DIR", raising=False)
    origin = f"file://{tmp_path / 'no_mirror'}"
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(cache))
    with pytest.raises(DataError, match="census-income.data.gz") as error:
        census_files(data_dir=str(tmp_path / "empty"), origin=origin)
    assert f"{origin}/census-income.data.gz" in str(error.value)


def test_the_serving_guide_quotes_the_tested_request_body():
    guide = (REPO / "docs" / "guides" / "serving.md").read_text()
    assert '--8<-- "examples/penguins_request.json"' in guide
