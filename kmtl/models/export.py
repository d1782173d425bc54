"""SavedModel export laid out for TensorFlow Serving: `base_dir/<version>/`."""

import errno
import json
import numbers
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from kmtl._checks import FLOAT32_MAX
from kmtl._checks import process_alive
from kmtl.data.pipeline import TF_DTYPES
from kmtl.errors import ConfigError
from kmtl.errors import DataError
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


def read_served_inputs(version_dir):
    """`{column: signature input}` of an export: `assets/kmtl_inputs.json`,
    or `{}` when the export has none (every input keeps its column's name).

    Args:
        version_dir: str. A version directory `export_saved_model` wrote.
    """
    path = os.path.join(os.fspath(version_dir), INPUT_NAMES_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["inputs"]


# === Input checks ===


def _shape_text(shape):
    """`(None, 28, 28)` -> `(batch, 28, 28)`; `(None,)` -> `(batch,)`."""
    dims = ["batch" if i == 0 else "?" if d is None else str(d)
            for i, d in enumerate(shape)]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def _named(key, column):
    """An input as messages name it, in backticks: TensorFlow escapes quotes
    in an assertion's message."""
    return f"{SIGNATURE_NAME} input `{key}` (column `{column}`)"


def serving_input_checks(inputs, specs, columns=None):
    """The served graph's checks of the inputs of a signature, by name.

    Before the graph runs TensorFlow checks each input's dtype (naming it by
    position only), but not its shape when every argument is a tensor (a
    Python call with tensors, a TF1 session, TF Serving): a `(batch, 2)`
    tensor for a `(batch,)` input, a scalar, or inputs of different batch
    sizes reach the model and fail deep inside it ("ConcatOp : Ranks of all
    input tensors should match"). These assertions run first and fail with an
    `InvalidArgumentError` naming the signature input, its column, the
    expected shape and the received one, for every caller of the SavedModel.
    They do not change the values (the outputs are bit-identical).

    The shape is matched as text (`"2,28,28"` against `\\d+,28,28`): a rank
    test (`tf.rank`) would be folded to True by Grappler from the declared
    shape, which TensorFlow does not enforce when the signature is called.

    Args:
        inputs: dict `{signature input: tensor}`, the signature's arguments.
        specs: dict `{signature input: tf.TensorSpec}`, the signature, whose
            first dimension is the batch.
        columns: dict `{signature input: column}` for the messages, or None
            (the column is the signature input).

    Returns:
        dict `{signature input: tensor}`: `inputs` (identities) that depend
        on the checks.
    """
    columns = columns or {}
    shape_checks = []
    for key, spec in specs.items():
        pattern = r"\d+" + "".join(
            r",\d+" if dim is None else f",{dim}" for dim in spec.shape[1:])
        received = tf.strings.reduce_join(
            tf.strings.as_string(tf.shape(inputs[key])), separator=",")
        shape_checks.append(tf.debugging.Assert(
            tf.strings.regex_full_match(received, pattern),
            [f"{_named(key, columns.get(key, key))} must have shape "
             f"{_shape_text(spec.shape)}, one row per example; received "
             f"shape", tf.shape(inputs[key])], name=f"check_shape_{key}"))
    batch_checks = []
    with tf.control_dependencies(shape_checks):
        first, *others = specs
        batch = tf.shape(inputs[first])[0]
        for key in others:
            size = tf.shape(inputs[key])[0]
            batch_checks.append(tf.debugging.Assert(
                tf.equal(size, batch),
                [f"{_named(key, columns.get(key, key))} and input `{first}` "
                 f"(column `{columns.get(first, first)}`) must have the same "
                 f"batch size (rows); received", size, "and", batch],
                name=f"check_batch_{key}"))
    with tf.control_dependencies(shape_checks + batch_checks):
        return {key: tf.identity(value) for key, value in inputs.items()}


def check_serving_inputs(signature, inputs, columns=None):
    """Checks `inputs` by name against a loaded `serving_default` signature
    and converts them to its dtypes, as TF Serving's REST API converts JSON.

    Calling the signature itself names a wrong dtype by position only ("input
    #1 (zero-based) was expected to be a float tensor"); this names the input.
    Accepted, as TF Serving accepts in JSON: numbers (not booleans) for a
    float input, integers up to 2**24 exactly, floats within float32's range;
    integers (or whole floats) for an int64 input; strings or bytes for a
    string input.

    Args:
        signature: the signature, `tf.saved_model.load(path).signatures[
            "serving_default"]`.
        inputs: dict `{signature input: array-like or tensor}`, each of shape
            `(batch, ...)` as the signature declares.
        columns: dict `{column: signature input}` (`read_served_inputs`) for
            the messages, or None.

    Returns:
        dict `{signature input: tf.Tensor}`: call `signature(**returned)`.

    Raises:
        DataError: an input is missing, unknown, of the wrong kind of value,
            not exactly convertible, of the wrong shape, or of another batch
            size than the others; naming the signature input and its column.
    """
    specs = signature.structured_input_signature[1]
    column_of = {key: column for column, key in (columns or {}).items()}
    missing = [key for key in specs if key not in inputs]
    unknown = [key for key in inputs if key not in specs]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(
                _named(key, column_of.get(key, key)) for key in missing))
        if unknown:
            parts.append(f"{SIGNATURE_NAME} has no input "
                         + ", ".join(f"`{key}`" for key in unknown))
        raise DataError(f"{'; '.join(parts)}. Send exactly the inputs "
                        f"{sorted(specs)} (saved_model_cli show --all lists them).")
    converted, batches = {}, {}
    for key, spec in specs.items():
        name = _named(key, column_of.get(key, key))
        value = inputs[key]
        value = value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)
        value = _convert(value, spec.dtype, name)
        if (value.ndim != len(spec.shape) or any(
                want is not None and got != want
                for got, want in zip(value.shape[1:], spec.shape[1:]))):
            raise DataError(f"{name} must have shape {_shape_text(spec.shape)}, "
                            f"one row per example; received shape "
                            f"{tuple(value.shape)}.")
        batches[key] = value.shape[0]
        converted[key] = tf.constant(value, spec.dtype)
    if len(set(batches.values())) > 1:
        sizes = "; ".join(f"`{key}` (column `{column_of.get(key, key)}`): {size}"
                          for key, size in sorted(batches.items()))
        raise DataError(f"The inputs of {SIGNATURE_NAME} must have the same batch "
                        f"size (rows); received {sizes}.")
    return converted


def _convert(values, dtype, name):
    """`values` (an ndarray) as `dtype`'s NumPy type, or a DataError naming
    the input when that is not exact (the rules of TF Serving's JSON)."""
    kind = values.dtype.kind
    if kind == "O" and values.size:
        flat = values.ravel()
        if all(isinstance(v, (str, bytes)) for v in flat):
            kind = "U"
        elif all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                 for v in flat):
            values = values.astype("float64")
            kind = values.dtype.kind
    given = {"U": "strings", "S": "strings", "b": "booleans", "f": "floats",
             "i": "integers", "u": "integers"}.get(kind, f"{values.dtype} values")
    if dtype == tf.string:
        if kind in "US" or not values.size:
            return values.astype(object)
        problem = f"expects strings; received {given}"
    elif dtype == tf.int64:
        if kind in "iu":
            return values.astype("int64")
        if kind == "f" and np.all(np.isfinite(values) & (values == np.round(values))):
            return values.astype("int64")
        problem = f"expects int64 codes (integers); received {given}"
        if kind == "f":
            problem += " that are not all whole numbers"
    elif dtype.is_floating:
        if kind in "iuf":
            # TF Serving's JSON rule: an integer beyond 2**24 or a float
            # beyond float32's range cannot be held without loss.
            wide = values.astype("float64")
            with np.errstate(invalid="ignore"):
                lossy = np.isfinite(wide) & (np.abs(wide) > (
                    2**24 if kind in "iu" else FLOAT32_MAX))
            if not lossy.any():
                return values.astype(dtype.as_numpy_dtype)
            raise DataError(f"{name} cannot hold {values[lossy].tolist()[0]!r} "
                            f"as {dtype.name} without loss of precision (TF "
                            f"Serving refuses it too); send a value float32 "
                            f"holds exactly.")
        problem = f"expects numbers ({dtype.name}); received {given}"
    else:
        return values.astype(dtype.as_numpy_dtype)
    if not values.size:
        return values.astype(dtype.as_numpy_dtype)
    first = values.ravel()[:1].tolist()[0]
    raise DataError(f"{name} {problem} (first value {first!r}). "
                    f"Send {'strings' if dtype == tf.string else 'numbers'}, as "
                    f"the signature declares (saved_model_cli show --all).")


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

    The signature checks, inside the served graph (so TF Serving's clients
    get the same errors), that each input has its shape (`(batch,)` for a
    column) and that all inputs have the same batch size; a failed check is an
    `InvalidArgumentError` naming the signature input, its column, the
    expected shape and the received one (`serving_input_checks`). An input's
    dtype is checked by TensorFlow before the graph runs (see
    `check_serving_inputs` for a check by name in Python).

    Args:
        model: a `kmtl.MultiTaskModel`.
        base_dir: str. The model's base path for TF Serving (`--model_base_path`).
        version: int or None. None takes the next free version (1 for a new
            directory); an existing version is an error.

    Returns:
        The path of the written version directory.

    Raises:
        ConfigError: `version` exists already or is not a positive integer.
        DataError: `base_dir` cannot be created (a file is in the way, no
            permission) or the export cannot be written (a full disk, any
            other `OSError`), naming the directory and the fix; the staging
            directory is removed and earlier versions are unchanged.
    """
    given = os.fspath(base_dir)
    base_dir = os.path.abspath(given)
    if version is not None and (not isinstance(version, int)
                                or isinstance(version, bool) or version < 1):
        raise ConfigError(f"version must be a positive integer. Received: {version!r}")
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise DataError(f"The export directory {given!r} is a file, not a "
                        f"directory; choose another export.dir.")
    try:
        os.makedirs(base_dir, exist_ok=True)
    except OSError as error:
        raise DataError(f"Cannot create the export directory {given!r}: "
                        f"{_reason(error)}. Choose another export.dir (a "
                        f"writable place).") from error
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
    column_of = {key: column for column, key in signature_inputs(model).items()}

    def serve(inputs):
        inputs = serving_input_checks(inputs, specs, column_of)
        batch = {name: tf.expand_dims(inputs[key], -1) if name in columns
                 else inputs[key] for name, key in keys.items()}
        return dict(model(batch, training=False))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve, input_signature=[specs])
    try:
        staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}pid{os.getpid()}-",
                                   dir=base_dir)
    except OSError as error:
        raise DataError(f"Cannot write the export into {given!r}: "
                        f"{_reason(error)}. {WRITE_FIX}") from error
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
    except (OSError, tf.errors.OpError) as error:
        # TensorFlow's own file writes fail with an OpError: a full disk is a
        # ResourceExhaustedError "<path>; No space left on device".
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(
            f"Cannot write the export into {given!r}: {_reason(error)}. The "
            f"partial export was removed and earlier versions are unchanged; "
            f"{WRITE_FIX[0].lower()}{WRITE_FIX[1:]}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


WRITE_FIX = "Free disk space or choose another export.dir."
"""The fix an export that cannot be written names."""


def _reason(error):
    """An OSError or a TensorFlow OpError as a sentence part: `[Errno 28] No
    space left on device: 'path'` -> `No space left on device (path)`."""
    if isinstance(error, tf.errors.OpError):
        return error.message or type(error).__name__
    reason = error.strerror or str(error) or type(error).__name__
    return f"{reason} ({error.filename})" if error.filename else reason


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
        if old_style or not process_alive(int(pid)):
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
