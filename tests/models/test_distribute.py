"""The train step under tf.distribute (two logical CPU devices) and mixed precision.

Both paths (loss weighting, per-task gradient aggregation) must give the update
of the single-device float32 step. Each case runs in a fresh process: logical
devices and the dtype policy must be set before TensorFlow starts.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from keras import ops
    import kmtl
    from kmtl.data import make_dataset
    from kmtl.features import resolve_features
    from kmtl.weighting import Weighting

    class SumOfGradients(Weighting):
        gradient_based = True

        def aggregate_gradients(self, gradients, losses, labelled):
            weights = ops.cast(labelled, gradients.dtype)
            return ops.sum(gradients * weights[:, None], axis=0), weights

    mode, weighting, policy = sys.argv[1], sys.argv[2], sys.argv[3]
    keras.mixed_precision.set_global_policy(policy)
    frame = kmtl.datasets.load_penguins().dropna().reset_index(drop=True)
    frame = frame.iloc[:64]
    tasks = kmtl.datasets.penguin_tasks()
    for task in tasks:
        task.fit(frame)
    features = resolve_features(frame, **kmtl.datasets.PENGUIN_FEATURES)
    for feature in features:
        feature.fit(frame)
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
                if mode == "mirrored" else tf.distribute.get_strategy())
    with strategy.scope():
        keras.utils.set_random_seed(7)
        model = kmtl.build_model(features, tasks, "mmoe", num_experts=2,
                                 expert_units=(8,), tower_units=(4,))
        model.compile(optimizer=keras.optimizers.SGD(0.05),
                      weighting=SumOfGradients() if weighting == "sum" else "ew")
    data = make_dataset(frame, features, tasks, 64)
    history = model.fit(data, epochs=2, verbose=0, shuffle=False).history
    print(json.dumps({"weights": [np.asarray(w, "float64").ravel().tolist()
                                  for w in model.trainable_weights],
                      "loss": history["loss"],
                      "replicas": strategy.num_replicas_in_sync}))
''')


def _run(mode, weighting, policy="float32"):
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode, weighting, policy],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_same_weights(a, b, rtol):
    assert len(a["weights"]) == len(b["weights"])
    for x, y in zip(a["weights"], b["weights"]):
        assert x == pytest.approx(y, rel=rtol, abs=rtol * 1e-2)


@pytest.fixture(scope="module")
def single_device():
    return _run("single", "ew")


@pytest.mark.parametrize("weighting", ["ew", "sum"])
def test_mirrored_two_replicas_equal_the_single_device_step(single_device, weighting):
    mirrored = _run("mirrored", weighting)
    assert mirrored["replicas"] == 2
    # Every row is labelled and each replica gets 32 of the 64 rows, so the mean of
    # the per-replica means is the batch mean: the updates must agree.
    _assert_same_weights(mirrored, single_device, rtol=1e-4)
    assert mirrored["loss"] == pytest.approx(single_device["loss"], rel=1e-4)


def test_mixed_precision_unscales_before_aggregating():
    # Under mixed_float16 the loss is scaled (dynamic loss scaling) before the
    # backward pass. The gradient path must unscale the task gradients before
    # aggregating and scale the direction back, so it takes the same steps
    # (including any step the loss-scale optimizer skips) as the plain path.
    plain = _run("single", "ew", "mixed_float16")
    aggregated = _run("single", "sum", "mixed_float16")
    assert all(abs(v) < 1e6 for w in aggregated["weights"] for v in w)
    _assert_same_weights(aggregated, plain, rtol=1e-2)
    assert aggregated["loss"] == pytest.approx(plain["loss"], rel=1e-3)
