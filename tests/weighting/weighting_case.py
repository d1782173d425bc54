"""The checks every registered weighting must pass (import as
`from weighting_case import run_weighting_test`).

`run_weighting_test(name)` builds the method from its registered name and checks:
its config round trip; a short fit of a tiny two-task model with a finite loss
and `<task>_weight` logged for every task; a batch in which one task has no
label, which must give that task weight 0 and no NaN anywhere; and a `.keras`
round trip that keeps the method's config, its state variables and the
model's compile config.
"""

import keras
import numpy as np
import tensorflow as tf

import kmtl
from kmtl.models import MultiTaskModel

TASKS = ("clicked", "price")
ROWS = 32


def tiny_model():
    """`x (4,) -> Dense(4) shared -> one Dense head per task`: the shared layer
    is reached by both task losses, so a gradient method has shared
    parameters to combine."""
    inputs = {"x": keras.Input((4,), name="x")}
    shared = keras.layers.Dense(4, activation="tanh", name="shared")(inputs["x"])
    outputs = {
        "clicked": keras.layers.Dense(1, activation="sigmoid", name="clicked")(shared),
        "price": keras.layers.Dense(1, name="price")(shared),
    }
    tasks = [kmtl.Task("clicked", "binary"),
             kmtl.Task("price", "regression", target_mean=0.0, target_std=1.0)]
    return MultiTaskModel(inputs, outputs, tasks=tasks, name="tiny")


def tiny_data(unlabelled=None, batch_size=16):
    """`(x, y, sample_weight)` batches of `ROWS` rows; every label of the task
    `unlabelled` is missing (sample weight 0)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 4)).astype("float32")
    y = {"clicked": (x[:, :1] > 0).astype("float32"),
         "price": (x[:, 1:2] - x[:, 2:3]).astype("float32")}
    weights = {name: np.full((ROWS,), 0.0 if name == unlabelled else 1.0, "float32")
               for name in TASKS}
    return tf.data.Dataset.from_tensor_slices(({"x": x}, y, weights)).batch(
        batch_size)


def check_config_round_trip(weighting):
    """`serialize` / `deserialize` and `get` of the config give the same class
    and config."""
    config = kmtl.weighting.serialize(weighting)
    clone = kmtl.weighting.deserialize(config)
    assert type(clone) is type(weighting)
    assert clone.get_config() == weighting.get_config()
    assert kmtl.weighting.get(config).get_config() == weighting.get_config()


def _check_fit(model):
    logs = model.fit(tiny_data(), epochs=2, verbose=0, shuffle=False).history
    assert np.isfinite(logs["loss"]).all()
    if not model.weighting.logs_weights:  # fixed weights: no constant column
        assert not [key for key in logs if key.endswith("_weight")], logs
        return
    for name in TASKS:
        weights = logs[f"{name}_weight"]
        assert len(weights) == 2 and np.isfinite(weights).all(), (name, weights)


def _check_unlabelled_task(model):
    logs = model.fit(tiny_data(unlabelled="price"), epochs=1, verbose=0,
                     shuffle=False).history
    assert logs["price_loss"] == [0.0], logs
    assert np.isfinite(logs["loss"][0]), logs
    if model.weighting.logs_weights:
        assert logs["price_weight"] == [0.0], logs
        assert np.isfinite(logs["clicked_weight"][0]), logs
    for variable in [*model.trainable_variables, *model.weighting.variables]:
        assert np.isfinite(np.asarray(variable)).all(), variable.path


def _check_keras_round_trip(model, path):
    model.save(path)
    restored = keras.saving.load_model(path)
    weighting = model.weighting
    assert type(restored.weighting) is type(weighting)
    assert restored.weighting.get_config() == weighting.get_config()
    assert restored.get_compile_config() == model.get_compile_config()
    # `weights`: the layer's own variables, which Keras saves. (Not the state of
    # a `SeedGenerator`, which Keras does not save: PCGrad, GradVac and GradDrop
    # restart their random stream from the seed; RLW also holds its state as a
    # weight, so it continues.)
    assert len(restored.weighting.weights) == len(weighting.weights)
    for got, saved in zip(restored.weighting.weights, weighting.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(saved))
    assert len(restored.trainable_variables) == len(model.trainable_variables)
    for got, saved in zip(restored.trainable_variables, model.trainable_variables):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(saved))
    x = {"x": np.random.default_rng(1).normal(size=(5, 4)).astype("float32")}
    expected, got = model.predict(x, verbose=0), restored.predict(x, verbose=0)
    for task in TASKS:
        np.testing.assert_array_equal(got[task], expected[task])


def run_weighting_test(name, tmp_path):
    """Runs every common check on the weighting registered as `name`.

    Args:
        name: a canonical name from `kmtl.weighting.list_weightings()`.
        tmp_path: a directory for the `.keras` file.
    """
    weighting = kmtl.weighting.get(name)
    assert isinstance(weighting, kmtl.weighting.Weighting)
    check_config_round_trip(weighting)
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), weighting=weighting)
    _check_fit(model)
    _check_unlabelled_task(model)
    _check_keras_round_trip(model, str(tmp_path / f"{name}.keras"))
