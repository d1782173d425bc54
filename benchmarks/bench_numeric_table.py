"""(d) A 64-column numeric table with three regression tasks: kmtl against
stock Keras with one `(batch, 64)` input.

kmtl: `build_model` on 64 numeric features (one encoded block, imputation with
missing indicators in the model), a shared bottom of (256, 256), towers of
(256, 64), equal weighting. Stock Keras: `Input((64,))`, the same Dense layers,
three MSE heads, `fit` with the same sample weights. Both train on the same
encoded values (the block `make_dataset` yields); they take turns over several
rounds and each keeps its fastest epoch.
"""

import keras

from benchmarks.common import epoch_seconds
from benchmarks.common import numeric_table
from kmtl import build_model

STEPS = 20
ROUNDS = 5
INPUTS = 64
TASKS = 3


def _stock(tasks):
    """Plain Keras: one input, the same layer sizes, Keras's own train step."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((INPUTS,), name="encoded:numeric")
    x = inputs
    for i, units in enumerate((256, 256)):
        x = keras.layers.Dense(units, activation="relu", name=f"shared_{i}")(x)
    outputs = {}
    for task in tasks:
        h = x
        for i, units in enumerate((256, 64)):
            h = keras.layers.Dense(units, activation="relu",
                                   name=f"{task.name}_tower_{i}")(h)
        outputs[task.name] = keras.layers.Dense(1, name=task.name)(h)
    model = keras.Model({"encoded:numeric": inputs}, outputs)
    model.compile(optimizer="adam", loss={t.name: "mse" for t in tasks})
    return model


def _kmtl(features, tasks):
    keras.utils.set_random_seed(0)
    model = build_model(features, tasks, "shared_bottom", units=(256, 256),
                        tower_units=(256, 64))
    model.compile(optimizer="adam", weighting="ew")
    return model


def run(rounds=ROUNDS):
    features, tasks, data = numeric_table(TASKS, INPUTS, STEPS * 1024)
    models = {"kmtl": _kmtl(features, tasks), "stock": _stock(tasks)}
    for model in models.values():  # tracing
        epoch_seconds(model, data)
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            best[name] = min(best[name], epoch_seconds(model, data))
    return {
        "kmtl_ms_per_step": best["kmtl"] / STEPS * 1000,
        "stock_keras_ms_per_step": best["stock"] / STEPS * 1000,
        "ratio": best["kmtl"] / best["stock"],
        "steps_per_epoch": STEPS,
        "rounds": rounds,
        "target": {"ratio": "<= 1.05"},
    }
