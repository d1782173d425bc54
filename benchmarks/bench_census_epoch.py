"""(c) Seconds per Census-Income epoch for MMoE with DeepCTR's default sizes.

kmtl: `examples/census_income.yaml` (3 experts of (256, 128), towers (64,),
embeddings of 4, batch 1024, raw strings in, preprocessing inside the model).

Reference, measured in the same run: the same network written the way DeepCTR's
MMoE is (Keras, one Dense stack per expert, one Embedding per feature on
label-encoded integer inputs prepared outside the model, `from_tensor_slices`
batches), trained by stock `fit`. DeepCTR itself needs Keras 2; it takes about
3.0 s per epoch on these machines.
"""

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import EpochTimer
from benchmarks.common import census
from benchmarks.common import median
from kmtl import build_model
from kmtl.data import make_dataset

EPOCHS = 3


def _reference_model(features, tasks, embedding_dim=4, experts=3):
    inputs, parts = {}, []
    for f in features:
        dtype = "float32" if f.kind == "numeric" else "int32"
        inputs[f.name] = keras.Input(shape=(1,), name=f.name, dtype=dtype)
        if f.kind == "numeric":
            parts.append(inputs[f.name])
        else:
            emb = keras.layers.Embedding(len(f.vocabulary) + 1, embedding_dim)(
                inputs[f.name])
            parts.append(keras.layers.Flatten()(emb))
    x = keras.layers.Concatenate()(parts)
    expert_outputs = []
    for _ in range(experts):
        h = keras.layers.Dense(256, activation="relu")(x)
        expert_outputs.append(keras.layers.Dense(128, activation="relu")(h))
    stacked = keras.layers.Lambda(lambda t: tf.stack(t, axis=1))(expert_outputs)
    outputs = {}
    for task in tasks:
        gate = keras.layers.Dense(experts, activation="softmax")(x)
        mixed = keras.layers.Dot(axes=(1, 1))([gate, stacked])
        tower = keras.layers.Dense(64, activation="relu")(mixed)
        outputs[task.name] = keras.layers.Dense(1, activation="sigmoid",
                                                name=task.name)(tower)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={t.name: "binary_crossentropy" for t in tasks},
                  metrics={t.name: [keras.metrics.AUC()] for t in tasks})
    return model


def _reference_data(train, features, tasks):
    x = {}
    for f in features:
        values = f.convert(train)
        if f.kind == "numeric":
            x[f.name] = ((np.nan_to_num(values, nan=f.mean) - f.mean)
                         / np.sqrt(f.variance)).astype("float32")
        else:
            index = {v.encode() if isinstance(v, str) else v: i + 1
                     for i, v in enumerate(f.vocabulary)}
            x[f.name] = np.array([index.get(v, 0) for v in values], dtype="int32")
    y = {t.name: t.encode(train)[0] for t in tasks}
    return (tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(train), seed=0).batch(1024).prefetch(tf.data.AUTOTUNE))


def run():
    config, train, _, features, tasks = census()
    model_cfg = config["model"]
    model = build_model(features, tasks, model_cfg["architecture"],
                        tower_units=model_cfg["tower_units"],
                        embedding_dim=model_cfg["embedding_dim"],
                        **model_cfg["options"])
    model.compile(optimizer="adam")
    data = make_dataset(train, features, tasks, 1024, shuffle=True, seed=0)
    kmtl_timer = EpochTimer()
    model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[kmtl_timer])

    reference = _reference_model(features, tasks)
    ref_data = _reference_data(train, features, tasks)
    ref_timer = EpochTimer()
    reference.fit(ref_data, epochs=EPOCHS, verbose=0, callbacks=[ref_timer])
    kmtl_s = median(kmtl_timer.seconds[1:])
    ref_s = median(ref_timer.seconds[1:])
    return {
        "kmtl_s_per_epoch": kmtl_s,
        "reference_s_per_epoch": ref_s,
        "ratio": kmtl_s / ref_s,
        "kmtl_epoch_seconds": kmtl_timer.seconds,
        "reference_epoch_seconds": ref_timer.seconds,
        "deepctr_quoted_s_per_epoch": 3.0,
        "target": {"kmtl_s_per_epoch": "<= 3.0 (DeepCTR, quoted)"},
    }
