"""SavedModel export laid out for TensorFlow Serving: `base_dir/<version>/`."""

import errno
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from kmtl.data.pipeline import TF_DTYPES
from kmtl.errors import ConfigError
from kmtl.features import input_name

SIGNATURE_NAME = "serving_default"
"""The name of the exported serving signature (TF Serving's default)."""
INPUT_NAMES_FILE = os.path.join("assets", "kmtl_inputs.json")
"""Where, in a version directory, the export writes `{column: signature input}`
when a column is served under another name (`bill length (mm)` ->
`bill_length_mm`); absent when every input keeps its column's name."""


def signature_inputs(model):
    """The `serving_default` input of each of `model`'s inputs.

    A column keeps its name where TensorFlow takes it as a signature key (an
    ASCII letter, then ASCII letters, digits and `_`); any other is served
    under its model input name (`kmtl.features.input_name`: `bill length (mm)`
    -> `bill_length_mm`, `capital-gain` -> `capital_gain`).

    Args:
        model: a `kmtl.MultiTaskModel`.

    Returns:
        dict `{column or encoder input: signature input}`, in the model's input
        order.
    """
    columns = {f.input_name: f.name for f in model.features}
    return {columns.get(key, key): input_name(key) for key in model.input}


def renamed_inputs(model):
    """The inputs `serving_default` takes under another name than the column's:
    `{column: signature input}` (empty when every name is kept)."""
    return {column: key for column, key in signature_inputs(model).items()
            if column != key}


def describe_renamed_inputs(model):
    """A printable note listing the columns whose model input and serving
    input have another name (`renamed_inputs`), or None when every name is
    kept."""
    renamed = renamed_inputs(model)
    if not renamed:
        return None
    lines = [f"  {column!r} -> {key}" for column, key in renamed.items()]
    return "\n".join([
        f"Columns the model and the SavedModel signature take under another "
        f"name (an export lists them in {INPUT_NAMES_FILE}):", *lines])


def existing_versions(base_dir):
    """The versions exported under `base_dir`.

    Args:
        base_dir: str. A TF Serving model base path.

    Returns:
        list of int: the names of the integer-named directories in
        `base_dir`, sorted; `[]` when `base_dir` does not exist.
    """
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(d) for d in os.listdir(base_dir)
                  if d.isdigit() and os.path.isdir(os.path.join(base_dir, d)))


def export_saved_model(model, base_dir, version=None):
    """Exports `model` as a TF Serving SavedModel in `base_dir/<version>/`.

    The signature `serving_default` takes one input per raw feature, named after
    the feature's column, of shape `(batch,)` (float32 numbers with NaN for
    missing values, strings, or int64 codes), and one float32 input of shape
    `(batch, *shape)` per encoder input (an image); it returns one output per
    task, named after the task, of shape `(batch, units)` (derived tasks
    included): the same values as `model.predict`. A model input of shape
    `(batch, 1)` is served as `(batch,)`; any other shape is served as it is.

    A column name that TensorFlow refuses as a signature key (`bill length
    (mm)`, `île`, `capital-gain`, `2nd home`) is served under the feature's
    input name instead (`bill_length_mm`, ...; see `signature_inputs`); the
    export then also holds `assets/kmtl_inputs.json`,
    `{"inputs": {column: signature input}}` for every input, which TF
    Serving ignores.

    The export is written to a staging directory inside `base_dir`
    (`.export-pid<pid>-<random>`) and renamed into place, so a failed export
    leaves no partial version and earlier versions are never touched. The
    version is claimed by that rename: concurrent exports into one base
    directory take distinct versions. Staging directories of killed exports
    are removed by the next export (`clean_stale_staging`).

    Args:
        model: a `kmtl.MultiTaskModel`.
        base_dir: str. The model's base path for TF Serving (`--model_base_path`).
        version: int or None. None takes the next free version (1 for a new
            directory); an existing version is an error.

    Returns:
        The path of the written version directory.

    Raises:
        ConfigError: `version` exists already or is not a positive integer.
        OSError: `base_dir` cannot be created or written.
    """
    base_dir = os.path.abspath(os.fspath(base_dir))
    if version is not None and (not isinstance(version, int)
                                or isinstance(version, bool) or version < 1):
        raise ConfigError(f"version must be a positive integer. Received: {version!r}")
    os.makedirs(base_dir, exist_ok=True)
    clean_stale_staging(base_dir)
    if version is not None:
        _check_free(base_dir, version)

    specs, columns, keys = {}, set(), {}
    for name, tensor in model.input.items():
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        dtype = TF_DTYPES.get(dtype) or tf.as_dtype(dtype)
        shape = tuple(tensor.shape[1:])
        if shape == (1,):
            columns.add(name)
            shape = ()
        key = keys[name] = input_name(name)
        specs[key] = tf.TensorSpec((None, *shape), dtype, name=key)

    def serve(inputs):
        batch = {name: tf.expand_dims(inputs[key], -1) if name in columns
                 else inputs[key] for name, key in keys.items()}
        return dict(model(batch, training=False))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve, input_signature=[specs])
    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}pid{os.getpid()}-",
                               dir=base_dir)
    umask = os.umask(0)
    os.umask(umask)
    try:
        # mkdtemp makes a private (0700) directory; a model server running as
        # another user must be able to read the version directory.
        os.chmod(staging, 0o777 & ~umask)
        archive.write_out(staging, verbose=False)
        renamed = renamed_inputs(model)
        if renamed:
            _write_input_names(staging, signature_inputs(model))
        return _claim_version(staging, base_dir, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


STAGING_PREFIX = ".export-"
"""Where an export is written before it becomes a version:
`<base_dir>/.export-pid<pid>-<random>/`, renamed into place when complete."""


def _check_free(base_dir, version):
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target):
        raise ConfigError(f"Export version {version} exists already at {target}; "
                          f"pass another version or None for the next free one.")
    return target


def _claim_version(staging, base_dir, version):
    """Renames the complete `staging` directory to its version: `version`, or
    the next free one, retried while another export takes it first (the
    rename is atomic, and fails on a version that exists)."""
    while True:
        chosen = version
        if chosen is None:
            versions = existing_versions(base_dir)
            chosen = (versions[-1] + 1) if versions else 1
        target = _check_free(base_dir, chosen) if version is not None else (
            os.path.join(base_dir, str(chosen)))
        if os.path.exists(target):
            continue  # taken since existing_versions looked
        try:
            os.rename(staging, target)
            return target
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if version is not None:
                _check_free(base_dir, version)
                raise


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(base_dir):
    """Removes the staging directories that killed exports left in
    `base_dir` (`STAGING_PREFIX`): those whose process (the pid in the name)
    no longer runs on this machine, and those of kmtl 0.3 and earlier (no pid).
    A staging directory of a running export is kept.

    Returns:
        list of str: the removed directory names.
    """
    removed = []
    for name in sorted(os.listdir(base_dir)):
        path = os.path.join(base_dir, name)
        if not name.startswith(STAGING_PREFIX) or not os.path.isdir(path):
            continue
        pid = name[len(STAGING_PREFIX):].split("-")[0].removeprefix("pid")
        old_style = not name.startswith(STAGING_PREFIX + "pid") or not pid.isdigit()
        if old_style or not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def _write_input_names(version_dir, inputs):
    """Writes `{column: signature input}` to `assets/kmtl_inputs.json`: a file
    the SavedModel does not reference, so TensorFlow Serving ignores it."""
    path = os.path.join(version_dir, INPUT_NAMES_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"inputs": inputs}, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
