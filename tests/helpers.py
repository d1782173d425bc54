"""Helpers shared by test modules (import as `from helpers import ...`)."""

import contextlib
import io
import json
import textwrap
from pathlib import Path

import numpy as np
import yaml
from keras import ops
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

import kmtl
from kmtl import architectures
from kmtl.datasets import PENGUIN_FEATURES
from kmtl.datasets import penguin_tasks
from kmtl.features import fit_features
from kmtl.features import resolve_features

PENGUINS_EXAMPLE = Path(__file__).parents[1] / "examples" / "penguins.yaml"


def penguins_config(epochs, patience, dropout=0.0, **training):
    """examples/penguins.yaml as a dict: quiet, no export, `epochs` and
    early stopping `patience`, tower `dropout`, other `training` keys."""
    config = yaml.safe_load(PENGUINS_EXAMPLE.read_text())
    config["training"].update({"epochs": epochs,
                               "early_stopping_patience": patience,
                               "verbose": 0, **training})
    if dropout:
        config["model"]["tower_dropout"] = dropout
    config["export"] = {"enabled": False}
    return config


def snapshot(root):
    """Every path under `root` -> (size, mtime_ns, bytes) for files, None for dirs."""
    result = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        if path.is_dir():
            result[key] = None
        else:
            stat = path.stat()
            result[key] = (stat.st_size, stat.st_mtime_ns, path.read_bytes())
    return result


# A script for a fresh Python process that serves an export without kmtl:
# `python serve.py MODEL_DIR INPUTS_JSON OUTPUTS_NPZ [MODEL_DIR INPUTS_JSON
# OUTPUTS_NPZ ...]`, inputs keyed by signature input; several exports in one
# process save TensorFlow start-ups.
REFUSE_KMTL = textwrap.dedent("""\
    import json
    import sys


    class RefuseKmtl:
        # Serving must not need kmtl: importing it fails in this process.
        def find_spec(self, name, path=None, target=None):
            if name == "kmtl" or name.startswith("kmtl."):
                raise ImportError(f"{name} must not be needed to serve")


    sys.meta_path.insert(0, RefuseKmtl())
""")
"""The start of a script run in a fresh process to serve an export: any
import of kmtl fails there."""

FRESH_PROCESS = REFUSE_KMTL + textwrap.dedent("""\

    import numpy as np
    import tensorflow as tf

    served = []
    args = sys.argv[1:]
    for model_dir, inputs_file, outputs_file in zip(args[::3], args[1::3], args[2::3]):
        with open(inputs_file) as handle:
            raw = json.load(handle)
        serve = tf.saved_model.load(model_dir).signatures["serving_default"]
        specs = serve.structured_input_signature[1]
        inputs = {name: tf.constant(raw[name], dtype=spec.dtype)
                  for name, spec in specs.items()}
        outputs = serve(**inputs)
        np.savez(outputs_file,
                 **{name: value.numpy() for name, value in outputs.items()})
        served.append(sorted(outputs))
    print(json.dumps({"kmtl": "kmtl" in sys.modules, "keras": "keras" in sys.modules,
                      "outputs": served[-1], "served": served}))
""")


def served_names(path):
    """`{column: signature input}` from an export's `assets/kmtl_inputs.json`,
    `{}` when the export has none (every input keeps its column's name)."""
    listing = Path(path) / "assets" / "kmtl_inputs.json"
    if not listing.is_file():
        return {}
    return json.loads(listing.read_text(encoding="utf-8"))["inputs"]


def assert_export_serves(model, columns, folder):
    """Exports `model` for TF Serving into `folder`, loads the SavedModel back
    and checks that its `serving_default` signature, fed the raw `columns`
    (`{column: (rows,) array}` keyed by column name, as a client sends them,
    under the signature names `assets/kmtl_inputs.json` gives for renamed
    columns), returns every task's `model.predict` output under the task's
    name. Returns the version directory."""
    import tensorflow as tf

    from kmtl.models.export import check_serving_inputs

    path = kmtl.export_saved_model(model, str(folder))
    serving = tf.saved_model.load(path).signatures["serving_default"]
    keys = served_names(path)
    assert set(serving.structured_input_signature[1]) == {
        keys.get(name, name) for name in columns}
    served = serving(**check_serving_inputs(
        serving, {keys.get(name, name): value for name, value in columns.items()},
        keys))
    inputs = {f.name: f.input_name for f in model.features}
    expected = model.predict(
        {inputs.get(name, name): tf.constant(value[:, None]) if value.dtype == object
         else value[:, None] for name, value in columns.items()}, verbose=0)
    assert sorted(served) == sorted(model.task_names)
    for task in model.task_names:
        np.testing.assert_allclose(served[task].numpy(), expected[task],
                                   rtol=1e-5, atol=1e-6)
    return path


def raw_columns(model, frame):
    """`{feature: (rows,) array}` straight from the table, as a client sends it."""
    columns = {}
    for feature in model.features:
        column = frame[feature.name]
        if feature.dtype == "float32":
            columns[feature.name] = column.to_numpy("float32")
        elif feature.dtype == "int64":
            columns[feature.name] = column.to_numpy("int64")
        else:
            values = column.astype(object).where(column.notna(), "").astype(str)
            columns[feature.name] = values.to_numpy()
    return columns


# === Architecture layers ===


def random_inputs(rows=7, seed=0, scale=1.0, features=5):
    """A `(rows, features)` float32 batch of standard normal draws times `scale`."""
    x = np.random.default_rng(seed).normal(size=(rows, features)) * scale
    return x.astype("float32")


def to_numpy(x):
    return ops.convert_to_numpy(x)


def trainable_count(layer):
    """The number of trainable scalars of `layer`."""
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def relu(x):
    return np.maximum(x, 0.0)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def assert_config_round_trip(layer, x):
    """`layer` rebuilt from its config has the same config and, given the same
    weights, the same outputs on `x`; `architectures.serialize` / `get` revive
    it with the same class and config. Returns the rebuilt layer."""
    out = layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    cloned = clone(x)
    assert list(cloned) == list(layer.task_names)
    for name in layer.task_names:
        np.testing.assert_allclose(to_numpy(cloned[name]), to_numpy(out[name]),
                                   atol=1e-6)
    revived = architectures.get(architectures.serialize(layer))
    assert type(revived) is type(layer)
    assert revived.get_config() == config
    return clone


def assert_family_round_trip(obj, family, base, attributes=()):
    """`obj`'s config is plain JSON, and `base.from_config`, the family's `get`
    (from the config dict) and `serialize` / `deserialize` each give back an
    object of the same class with the same config and `attributes`.

    Args:
        obj: a task or feature.
        family: its module (`kmtl.tasks`, `kmtl.features`).
        base: the family's base class (`Task`, `Feature`), whose `from_config`
            must dispatch to `obj`'s class.
        attributes: names of fitted attributes that must survive the trip.
    """
    config = obj.get_config()
    assert json.loads(json.dumps(config)) == config
    for clone in (base.from_config(config), family.get(dict(config)),
                  family.deserialize(family.serialize(obj))):
        assert type(clone) is type(obj)
        assert clone.get_config() == config
        for attribute in attributes:
            assert getattr(clone, attribute) == getattr(obj, attribute), (
                f"{attribute} is lost in the config")


# === Penguin models ===


def fitted_penguins(rows=None):
    """`(frame, features, tasks)`: the penguins with a bill length (all of them,
    or `rows` sampled with random_state 0), and the penguin tasks and features
    fitted on them."""
    frame = kmtl.datasets.load_penguins().dropna(subset=["bill_length_mm"])
    if rows is not None:
        frame = frame.sample(rows, random_state=0)
    frame = frame.reset_index(drop=True)
    tasks = [task.fit(frame) for task in penguin_tasks()]
    features = [feature.fit(frame)
                for feature in resolve_features(frame, **PENGUIN_FEATURES)]
    return frame, features, tasks


def fit_tasks_and_features(frame, tasks, numeric=None, categorical=None):
    """`(features, tasks)`, both fitted on `frame`: the given feature columns,
    or every non-target column by its dtype."""
    tasks = [t.fit(frame) for t in tasks]
    features = resolve_features(frame, numeric, categorical,
                                exclude=[c for t in tasks for c in t.target_columns])
    return fit_features(features, frame), tasks


def read_tensorboard(directory):
    """`{tag: [(step, value), ...]}` from the event files in `directory`."""
    accumulator = event_accumulator.EventAccumulator(
        str(directory), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                  for e in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]}


def assert_same_under_xla(layer, x, **tolerance):
    """`layer(x)` inside `tf.function(jit_compile=True)` equals it eager."""
    import tensorflow as tf

    expected = ops.convert_to_numpy(layer(x))

    @tf.function(jit_compile=True)
    def compiled(inputs):
        return layer(inputs)

    np.testing.assert_allclose(ops.convert_to_numpy(compiled(tf.constant(x))),
                               expected, **tolerance)


def assert_keras_export_serves(model, x, folder, **tolerance):
    """`model.export(folder)` (a plain Keras model) serves what `model(x)`
    gives."""
    import tensorflow as tf

    model.export(str(folder), verbose=False)
    served = tf.saved_model.load(str(folder))
    np.testing.assert_allclose(served.serve(x), model(x), **tolerance)


# A tiny pretrained text model, written as a KerasHub preset (nothing is
# downloaded): tests/layers/test_pretrained_text.py and the text features' tests.
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "dress",
              "fit", "##s", "well", "too", "small", "great", "is", "a", "runs",
              "."]
HIDDEN = 8
LONGEST = 16


def write_preset(folder):
    """A one-block BERT (hidden size 8, at most 16 ids) and its lower-casing
    WordPiece tokenizer, saved as a KerasHub preset in `folder`."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=2,
        hidden_dim=HIDDEN, intermediate_dim=16, max_sequence_length=LONGEST)
    backbone.save_to_preset(str(folder))
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True
                                   ).save_to_preset(str(folder))
    return str(folder)


def run_cli(*args):
    """`kmtl ARGS` in-process: (exit code, stdout, stderr)."""
    from kmtl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()
