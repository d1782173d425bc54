"""One process of the distribution tests (tests/runs/test_distribution.py).

    python distributed_worker.py reference
        one process, two logical CPUs: trains EW, MGDA and DWA on one device, and
        MGDA under MirroredStrategy over the two CPUs;
    TF_CONFIG=... python distributed_worker.py multi_worker
        one worker of a MultiWorkerMirroredStrategy cluster: EW and MGDA;
    TF_CONFIG=... python distributed_worker.py parameter_server
        the chief of a ParameterServerStrategy cluster (EW, MGDA and DWA
        through fit_parameter_server), or a worker / ps, which only serves.

Prints one JSON line: per run, the trained weights, the history and the
number of replicas; plus this process's task and whether it is the chief.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from kmtl.runs import distribution  # noqa: E402

mode = sys.argv[1]
if mode == "parameter_server" and distribution.needs_server(mode):
    distribution.run_server()
if mode in ("multi_worker", "parameter_server"):
    # Before any other TensorFlow work: collectives are set up at start-up.
    strategy = distribution.make_strategy(mode)
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kmtl  # noqa: E402
from kmtl.data import make_dataset  # noqa: E402
from kmtl.features import resolve_features  # noqa: E402

ROWS, VALIDATION, BATCH, EPOCHS = 96, 32, 48, 2

frame = kmtl.datasets.load_penguins().dropna().reset_index(drop=True)
frame = frame.iloc[::2].reset_index(drop=True)  # every species and sex
train, held_out = frame.iloc[:ROWS], frame.iloc[ROWS:ROWS + VALIDATION]
tasks = kmtl.datasets.penguin_tasks()
for task in tasks:
    task.fit(train)
features = resolve_features(train, **kmtl.datasets.PENGUIN_FEATURES)
for feature in features:
    feature.fit(train)


def datasets(shard):
    data = make_dataset(train, features, tasks, BATCH, shuffle=True, seed=3)
    validation = make_dataset(held_out, features, tasks, BATCH)
    if shard:
        data, validation = (distribution.shard_by_data(data),
                            distribution.shard_by_data(validation))
    return data, validation


def run(strategy, weighting):
    # DWA, with early stopping: its epoch callback and the restoring of the
    # best epoch's weights (val_loss rises in epoch 2 here).
    callbacks = [keras.callbacks.EarlyStopping(
        patience=0, restore_best_weights=True)] if weighting == "dwa" else []
    with strategy.scope():
        keras.utils.set_random_seed(7)
        model = kmtl.build_model(features, tasks, "shared_bottom",
                                 units=(8,), tower_units=(4,))
        model.compile(optimizer=keras.optimizers.SGD(0.05), weighting=weighting)
    distribution.multi_worker_logs(model)
    data, validation = datasets(shard=mode == "multi_worker")
    if mode == "parameter_server":
        history = distribution.fit_parameter_server(
            model, data, epochs=EPOCHS, validation_data=validation,
            callbacks=callbacks)
    else:
        history = model.fit(data, validation_data=validation, epochs=EPOCHS,
                            callbacks=callbacks, verbose=0)
    return {"weights": [np.asarray(w, "float64").ravel().tolist()
                        for w in model.trainable_weights],
            "history": history.history,
            "evaluate": distribution.evaluate(model, validation),
            "replicas": strategy.num_replicas_in_sync}


if mode == "reference":
    mirrored = distribution.make_strategy("mirrored")
    default = distribution.make_strategy("default")
    result = {"single": {w: run(default, w) for w in ("ew", "mgda", "dwa")},
              "mirrored": {w: run(mirrored, w) for w in ("ew", "mgda")}}
else:
    weightings = ("ew", "mgda", "dwa") if mode == "parameter_server" else (
        "ew", "mgda")
    result = {w: run(strategy, w) for w in weightings}
    result["task"] = list(distribution.cluster_task(strategy))
    result["chief"] = distribution.is_chief(strategy)
print(json.dumps(result))
