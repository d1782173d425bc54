"""One process of the distribution tests (tests/runs/test_distribution.py).

    python distributed_worker.py reference
        one process, two logical CPUs: trains EW, MGDA and DWA on one device,
        and EW and MGDA under MirroredStrategy over the two CPUs;
    TF_CONFIG=... python distributed_worker.py multi_worker
        one worker of a MultiWorkerMirroredStrategy cluster: EW and MGDA;
    TF_CONFIG=... python distributed_worker.py parameter_server
        the chief of a ParameterServerStrategy cluster (EW, MGDA and DWA
        through fit_parameter_server, and EW stopped after epoch 1 and
        resumed from its RunBackup), or a worker / ps, which only serves.

Prints one JSON line: per run, the trained weights, the history, the
validation logs of `distribution.evaluate` and the number of replicas; plus
this process's task and whether it is the chief.
"""

import json
import os
import sys
import tempfile

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
from kmtl.callbacks.backup import RunBackup  # noqa: E402
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


def build(strategy, weighting):
    with strategy.scope():
        keras.utils.set_random_seed(7)
        model = kmtl.build_model(features, tasks, "shared_bottom",
                                 units=(8,), tower_units=(4,))
        model.compile(optimizer=keras.optimizers.SGD(0.05), weighting=weighting)
    return distribution.multi_worker_logs(model)


def fit(model, epochs, callbacks=(), first_epoch=0):
    data = make_dataset(train, features, tasks, BATCH, shuffle=True, seed=3,
                        first_epoch=first_epoch)
    validation = make_dataset(held_out, features, tasks, BATCH)
    if mode == "multi_worker":
        data = distribution.shard_by_data(data)
        validation = distribution.shard_by_data(validation)
    history = distribution.fit(model, data, validation_data=validation,
                               epochs=epochs, callbacks=list(callbacks),
                               verbose=0)
    return history.history, validation


def outcome(model, history, validation, strategy):
    return {"weights": [np.asarray(w, "float64").ravel().tolist()
                        for w in model.trainable_weights],
            "history": history,
            "evaluate": distribution.evaluate(model, validation),
            "replicas": strategy.num_replicas_in_sync}


def run(strategy, weighting):
    # DWA, with early stopping: its epoch callback and the restoring of the
    # best epoch's weights (val_loss rises in epoch 2 here).
    callbacks = [keras.callbacks.EarlyStopping(
        patience=0, restore_best_weights=True)] if weighting == "dwa" else []
    model = build(strategy, weighting)
    history, validation = fit(model, EPOCHS, callbacks)
    return outcome(model, history, validation, strategy)


def resumed(strategy, weighting):
    """Epoch 1, then a fresh model resumed from its backup (RunBackup)."""
    backup_dir = os.path.join(tempfile.mkdtemp(), "backup")
    for epochs in (1, EPOCHS):
        model = build(strategy, weighting)
        backup = RunBackup(backup_dir)
        state = backup.read_state()
        _, validation = fit(model, epochs, [backup],
                            first_epoch=state["epoch"] if state else 0)
    return outcome(model, backup.history, validation, strategy)


if mode == "reference":
    mirrored = distribution.make_strategy("mirrored")
    default = distribution.make_strategy("default")
    result = {"single": {w: run(default, w) for w in ("ew", "mgda", "dwa")},
              "mirrored": {w: run(mirrored, w) for w in ("ew", "mgda")}}
else:
    weightings = ("ew", "mgda", "dwa") if mode == "parameter_server" else (
        "ew", "mgda")
    result = {w: run(strategy, w) for w in weightings}
    if mode == "parameter_server":
        result["ew_resumed"] = resumed(strategy, "ew")
    result["task"] = list(distribution.cluster_task(strategy))
    result["chief"] = distribution.is_chief(strategy)
print(json.dumps(result))
