"""SavedModel export laid out for TensorFlow Serving: `base_dir/<version>/`."""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from kmtl.data.pipeline import TF_DTYPES
from kmtl.errors import ConfigError

SIGNATURE_NAME = "serving_default"
"""The name of the exported serving signature (TF Serving's default)."""


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
    the feature, of shape `(batch,)` (float32 numbers with NaN for missing values,
    strings, or int64 codes), and one float32 input of shape `(batch, *shape)`
    per encoder input (an image); it returns one output per task, named after the
    task, of shape `(batch, units)` (derived tasks included): the same values as
    `model.predict`. A model input of shape `(batch, 1)` is served as `(batch,)`;
    any other shape is served as it is.

    The export is written to a temporary directory inside `base_dir` and renamed
    into place, so a failed export leaves no partial version and earlier versions
    are never touched.

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
    os.makedirs(base_dir, exist_ok=True)
    versions = existing_versions(base_dir)
    if version is None:
        version = (versions[-1] + 1) if versions else 1
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"version must be a positive integer. Received: {version!r}")
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target):
        raise ConfigError(f"Export version {version} exists already at {target}; "
                          f"pass another version or None for the next free one.")

    specs, columns = {}, set()
    for name, tensor in model.input.items():
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        dtype = TF_DTYPES.get(dtype) or tf.as_dtype(dtype)
        shape = tuple(tensor.shape[1:])
        if shape == (1,):
            columns.add(name)
            shape = ()
        specs[name] = tf.TensorSpec((None, *shape), dtype, name=name)

    def serve(inputs):
        batch = {name: tf.expand_dims(value, -1) if name in columns else value
                 for name, value in inputs.items()}
        return dict(model(batch, training=False))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve, input_signature=[specs])
    staging = tempfile.mkdtemp(prefix=f".export-{version}-", dir=base_dir)
    umask = os.umask(0)
    os.umask(umask)
    try:
        # mkdtemp makes a private (0700) directory; a model server running as
        # another user must be able to read the version directory.
        os.chmod(staging, 0o777 & ~umask)
        archive.write_out(staging, verbose=False)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
