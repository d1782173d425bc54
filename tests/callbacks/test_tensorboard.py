"""kmtl's TensorBoard callback writes what Keras's writes."""

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import read_tensorboard

import kmtl
from kmtl.callbacks import TensorBoard
from kmtl.data import make_dataset
from kmtl.features import Feature


def _fit(callback, frame, features, tasks):
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,),
                             tower_units=())
    model.compile(optimizer="adam", weighting="dwa")
    data = make_dataset(frame, features, tasks, 16)
    model.fit(data, validation_data=data, epochs=3, verbose=0, callbacks=[callback])


def test_the_same_tags_steps_and_values_as_keras_tensorboard(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=48), "c": rng.choice(["a", "b"], 48)})
    frame["y"] = frame["x"] * 2.0 + rng.normal(size=48)
    frame["z"] = (frame["x"] > 0).astype(float)
    features = [Feature("x", "numeric").fit(frame),
                Feature("c", "categorical").fit(frame)]
    tasks = [kmtl.Task("y", "regression").fit(frame),
             kmtl.Task("z", "binary").fit(frame)]
    _fit(keras.callbacks.TensorBoard(tmp_path / "keras"), frame, features, tasks)
    _fit(TensorBoard(tmp_path / "kmtl"), frame, features, tasks)
    for run in ("train", "validation"):
        expected = read_tensorboard(tmp_path / "keras" / run)
        got = read_tensorboard(tmp_path / "kmtl" / run)
        epoch_tags = {tag for tag in expected if tag.startswith("epoch_")}
        assert {tag for tag in got if tag.startswith("epoch_")} == epoch_tags
        assert {"epoch_loss", "epoch_y_mae", "epoch_z_auc",
                "epoch_y_weight"} <= epoch_tags
        for tag in epoch_tags:
            assert [step for step, _ in got[tag]] == [0, 1, 2], tag
            assert [v for _, v in got[tag]] == pytest.approx(
                [v for _, v in expected[tag]], rel=1e-6), tag
    assert "epoch_learning_rate" in read_tensorboard(tmp_path / "kmtl" / "train")
