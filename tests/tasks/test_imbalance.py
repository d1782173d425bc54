"""Class weights and the focal loss of classification tasks (issue 15, part 2).

Every expected number is written out from its formula: the class-weighted
mean `sum m w l / sum m w` over labelled rows (and labels), scikit-learn's
balanced rule `n / (k n_c)`, and the focal loss of Lin et al. (ICCV 2017)
`-alpha_t (1 - p_t)^gamma log(p_t)`.
"""

import json
import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

import kmtl
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.runs.config import parse_config
from kmtl.runs.training import train
from kmtl.tasks import ClassWeightedLoss
from kmtl.tasks import SparseCategoricalFocalCrossentropy
from kmtl.tasks import Task


def table():
    """Six rows: a binary `yn` (positive "yes", row 4 unlabelled), a
    multiclass `kind` (row 4 unlabelled) and 0/1 labels `m1`, `m2` (row 4
    unlabelled)."""
    return pd.DataFrame({
        "x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        "yn": ["no", "yes", "no", "no", None, "yes"],
        "kind": ["a", "b", "c", "a", None, "a"],
        "m1": [0.0, 1.0, 0.0, 0.0, None, 0.0],
        "m2": [1.0, 1.0, 0.0, 0.0, None, 1.0],
    })


LABELLED = np.array([True, True, True, True, False, True])


def tiny_model(tasks, frame):
    """A shared-bottom model on `x` for fitted `tasks`, its predictions on
    `frame` and the logs of one evaluation batch of the whole frame."""
    features = [Feature("x", "numeric").fit(frame)]
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,),
                             tower_units=(3,))
    model.compile(optimizer="sgd")
    x, y, weight = next(iter(kmtl.data.make_dataset(frame, features, tasks,
                                                    batch_size=len(frame))))
    logs = model.test_on_batch(x, y, weight, return_dict=True)
    predictions = {k: keras.ops.convert_to_numpy(v)
                   for k, v in model(x).items()}
    return model, predictions, logs, (x, y, weight)


def bce(label, p):
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


# === Class weights: the weighted mean, metrics unweighted ===


def test_binary_class_weights_are_the_weighted_mean_and_metrics_stay_plain():
    frame = table()
    task = Task("yn", "binary", positive="yes", metrics=["crossentropy"],
                class_weight={"yes": 3.0, "no": 0.5}).fit(frame)
    assert task.fitted_class_weight == {"positive": 3.0, "negative": 0.5}
    _, predictions, logs, _ = tiny_model([task], frame)
    p = predictions["yn"][:, 0][LABELLED]
    label = np.array([0, 1, 0, 0, 1])
    weight = np.where(label == 1, 3.0, 0.5)
    losses = bce(label, p)
    expected = (weight * losses).sum() / weight.sum()
    np.testing.assert_allclose(float(logs["yn_loss"]), expected, rtol=1e-5)
    # The metric sees the plain 0/1 mask: the unweighted mean.
    np.testing.assert_allclose(float(logs["yn_crossentropy"]), losses.mean(),
                               rtol=1e-5)
    assert abs(expected - losses.mean()) > 0.01


def test_binary_positive_negative_keys_and_numeric_labels():
    frame = table().assign(flag=[0, 1, 0, 0, None, 1])
    by_alias = Task("flag", "binary",
                    class_weight={"positive": 3.0, "negative": 0.5}).fit(frame)
    by_label = Task("flag", "binary", class_weight={1: 3.0, 0: 0.5}).fit(frame)
    assert by_alias.fitted_class_weight == by_label.fitted_class_weight == {
        "positive": 3.0, "negative": 0.5}
    # The fitted form survives JSON (whose keys are strings).
    config = json.loads(json.dumps(by_label.get_config()))
    assert Task.from_config(config).get_config() == by_label.get_config()


def test_multiclass_class_weights_are_the_weighted_mean():
    frame = table()
    task = Task("kind", "multiclass", metrics=["crossentropy"],
                class_weight={"a": 1.0, "b": 2.0, "c": 4.0}).fit(frame)
    assert task.fitted_class_weight == [1.0, 2.0, 4.0]
    _, predictions, logs, _ = tiny_model([task], frame)
    p = predictions["kind"][LABELLED]
    codes = np.array([0, 1, 2, 0, 0])
    losses = -np.log(p[np.arange(5), codes])
    weight = np.array([1.0, 2.0, 4.0])[codes]
    np.testing.assert_allclose(float(logs["kind_loss"]),
                               (weight * losses).sum() / weight.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(logs["kind_crossentropy"]), losses.mean(),
                               rtol=1e-5)
    listed = Task("kind", "multiclass", class_weight=[1.0, 2.0, 4.0]).fit(frame)
    assert listed.fitted_class_weight == [1.0, 2.0, 4.0]


def test_multilabel_class_weights_per_label():
    frame = table()
    task = Task("tags", "multilabel", target=["m1", "m2"],
                class_weight={"m1": 4.0,
                              "m2": {"positive": 2.0, "negative": 0.5}}).fit(frame)
    assert task.fitted_class_weight == {
        "m1": {"positive": 4.0, "negative": 1.0},
        "m2": {"positive": 2.0, "negative": 0.5}}
    _, predictions, logs, _ = tiny_model([task], frame)
    p = predictions["tags"][LABELLED]
    labels = frame[["m1", "m2"]].to_numpy()[LABELLED]
    weight = np.where(labels == 1, [4.0, 2.0], [1.0, 0.5])
    expected = (weight * bce(labels, p)).sum() / weight.sum()
    np.testing.assert_allclose(float(logs["tags_loss"]), expected, rtol=1e-5)


def test_a_one_label_multilabel_task_weighs_as_the_binary_task():
    frame = table()
    binary = Task("m2", "binary", class_weight={1.0: 3.0, 0.0: 0.5}).fit(frame)
    multilabel = Task("m2", "multilabel", target=["m2"],
                      class_weight={"m2": {"positive": 3.0,
                                           "negative": 0.5}}).fit(frame)
    y, mask = binary.encode(frame)
    p = np.array([[0.2], [0.7], [0.4], [0.1], [0.5], [0.6]], "float32")
    np.testing.assert_allclose(
        float(binary.build_loss()(y, p, sample_weight=mask)),
        float(multilabel.build_loss()(y, p, sample_weight=mask)), rtol=1e-6)


def test_a_batch_without_labels_adds_exactly_zero():
    task = Task("yn", "binary", positive="yes",
                class_weight="balanced").fit(table())
    loss = task.build_loss()([[0.0], [1.0]], [[0.3], [0.6]],
                             sample_weight=[0.0, 0.0])
    assert float(loss) == 0.0


# === Balanced weights: n / (k n_c) ===


def test_balanced_weights_by_hand():
    frame = table()
    # yn: 5 labelled rows, 2 "yes", 3 "no" -> 5 / (2 * 2), 5 / (2 * 3).
    binary = Task("yn", "binary", positive="yes", class_weight="balanced")
    assert binary.fit(frame).fitted_class_weight == pytest.approx(
        {"positive": 1.25, "negative": 5 / 6})
    # kind: a 3, b 1, c 1 of 5 -> 5 / (3 * n_c); the declared class "d" never
    # occurs and weighs 1.
    multiclass = Task("kind", "multiclass", classes=["a", "b", "c", "d"],
                      class_weight="balanced")
    assert multiclass.fit(frame).fitted_class_weight == pytest.approx(
        [5 / 9, 5 / 3, 5 / 3, 1.0])
    # m1: 1 of 5 on -> 5 / 2, 5 / 8; m2: 3 of 5 on -> 5 / 6, 5 / 4.
    multilabel = Task("tags", "multilabel", target=["m1", "m2"],
                      class_weight="balanced")
    fitted = multilabel.fit(frame).fitted_class_weight
    assert list(fitted) == ["m1", "m2"]
    assert fitted["m1"] == pytest.approx({"positive": 2.5, "negative": 0.625})
    assert fitted["m2"] == pytest.approx({"positive": 5 / 6, "negative": 1.25})


def test_balanced_weights_are_kept_by_a_refit_and_the_config():
    task = Task("yn", "binary", positive="yes", class_weight="balanced")
    config = task.fit(table()).get_config()
    assert config["class_weight"] == "balanced"
    assert config["fitted_class_weight"] == pytest.approx(
        {"positive": 1.25, "negative": 5 / 6})
    clone = Task.from_config(json.loads(json.dumps(config)))
    # Fitted numbers given: another table does not change them.
    other = table().assign(yn=["yes", "no", "no", "no", "no", "no"])
    assert clone.fit(other).get_config() == config


# === Focal loss ===


def test_binary_focal_loss_by_hand():
    frame = table()
    task = Task("yn", "binary", positive="yes",
                loss={"name": "focal", "alpha": 0.25, "gamma": 2.0}).fit(frame)
    y, mask = task.encode(frame)
    p = np.array([[0.2], [0.7], [0.4], [0.1], [0.5], [0.6]], "float32")
    pt = np.where(y[:, 0] == 1, p[:, 0], 1 - p[:, 0])
    alpha = np.where(y[:, 0] == 1, 0.25, 0.75)
    focal = -alpha * (1 - pt) ** 2 * np.log(pt)
    loss = task.build_loss()
    np.testing.assert_allclose(float(loss(y, p, sample_weight=mask)),
                               focal[LABELLED].mean(), rtol=1e-5)
    # With class weights: their weighted mean of the focal losses.
    weighted = Task("yn", "binary", positive="yes", loss=task.loss,
                    class_weight={"yes": 3.0, "no": 0.5}).fit(frame)
    w = np.where(y[:, 0] == 1, 3.0, 0.5)[LABELLED]
    np.testing.assert_allclose(
        float(weighted.build_loss()(y, p, sample_weight=mask)),
        (w * focal[LABELLED]).sum() / w.sum(), rtol=1e-5)


def test_multiclass_focal_loss_by_hand():
    frame = table()
    task = Task("kind", "multiclass",
                loss={"name": "focal", "alpha": 0.5, "gamma": 1.5}).fit(frame)
    y, mask = task.encode(frame)
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4],
                  [0.9, 0.05, 0.05], [0.2, 0.2, 0.6], [0.25, 0.5, 0.25]],
                 "float32")
    pt = p[np.arange(6), y]
    focal = -0.5 * (1 - pt) ** 1.5 * np.log(pt)
    np.testing.assert_allclose(
        float(task.build_loss()(y, p, sample_weight=mask)),
        focal[LABELLED].mean(), rtol=1e-5)
    plain = SparseCategoricalFocalCrossentropy(alpha=1.0, gamma=0.0)
    np.testing.assert_allclose(
        float(plain(y, p)),
        float(keras.losses.SparseCategoricalCrossentropy()(y, p)), rtol=1e-6)


@pytest.mark.parametrize("kind,target,cross_entropy", [
    ("binary", "m2", keras.losses.BinaryCrossentropy),
    ("multilabel", ["m1", "m2"], keras.losses.BinaryCrossentropy),
    ("multiclass", "kind", keras.losses.SparseCategoricalCrossentropy),
])
def test_focal_with_gamma_0_and_no_alpha_is_the_cross_entropy(kind, target,
                                                              cross_entropy):
    frame = table()
    task = Task("t", kind, target=target,
                loss={"name": "focal", "gamma": 0.0}).fit(frame)
    y, mask = task.encode(frame)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, (6, task.units)).astype("float32")
    if kind == "multiclass":
        p /= p.sum(axis=1, keepdims=True)
    expected = cross_entropy(reduction="mean_with_sample_weight")(
        y, p, sample_weight=mask)
    np.testing.assert_allclose(float(task.build_loss()(y, p, sample_weight=mask)),
                               float(expected), rtol=1e-5)


def test_focal_string_defaults():
    task = Task("yn", "binary", positive="yes", loss="focal")
    loss = task.build_loss()
    assert isinstance(loss, keras.losses.BinaryFocalCrossentropy)
    config = loss.get_config()
    assert (config["gamma"], config["apply_class_balancing"]) == (2.0, False)
    assert config["reduction"] == "mean_with_sample_weight"
    multiclass = Task("kind", "multiclass", classes=["a", "b"], loss="focal")
    assert multiclass.build_loss().get_config()["alpha"] == 1.0


# === Errors ===


@pytest.mark.parametrize("kwargs,match", [
    (dict(type="regression", target="x", class_weight="balanced"),
     r"'t'.*class_weight is for binary, multiclass, multilabel tasks.*"
     r"not a regression task"),
    (dict(type="binary", target=[], class_weight="balanced"),
     r"not a task without target"),
    (dict(type="binary", class_weight="inverse"),
     r"'balanced' or a mapping.*class_weight='inverse'"),
    (dict(type="binary", class_weight={"yes": 0.0, "no": 1.0}),
     r"finite number > 0.*weight 0.0"),
    (dict(type="binary", class_weight={"yes": math.inf, "no": 1.0}),
     r"finite number > 0.*weight inf"),
    (dict(type="multiclass", class_weight={"a": math.nan}),
     r"finite number > 0.*weight nan"),
    (dict(type="multiclass", class_weight={"a": True}),
     r"finite number > 0.*weight True"),
    (dict(type="multiclass", classes=["a", "b"], class_weight={"z": 2.0}),
     r"class_weight key 'z' is not one of the classes \['a', 'b'\]"),
    (dict(type="multiclass", classes=["a", "b"], class_weight=[1.0]),
     r"one weight per class"),
    (dict(type="multilabel", target=["m1", "m2"], class_weight={"m3": 2.0}),
     r"class_weight key 'm3' is not one of the labels"),
    (dict(type="multilabel", target=["m1", "m2"],
          class_weight={"m1": {"positve": 2.0}}),
     r"weights of label 'm1'.*positive: w, negative: w"),
    (dict(type="regression", target="x", loss="focal"),
     r"focal loss is for binary, multiclass, multilabel tasks, not regression"),
    (dict(type="binary", loss={"name": "focal", "alpha": 1.5}),
     r"alpha must be a number in \[0, 1\].*loss.alpha=1.5"),
    (dict(type="binary", loss={"name": "focal", "gamma": -1}),
     r"gamma must be a finite number >= 0.*loss.gamma=-1"),
    (dict(type="binary", loss={"name": "focal", "beta": 1}),
     r"unknown key\(s\) \['beta'\] in the focal loss"),
])
def test_bad_declarations_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Task("t", **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(type="binary", target="yn", positive="yes",
          class_weight={"yes": 2.0, "maybe": 1.0, "no": 1.0}),
     r"'t'.*class_weight key 'maybe' is not a label of column 'yn'"),
    (dict(type="binary", target="yn", positive="yes", class_weight={"yes": 2.0}),
     r"training label 'no' of column 'yn' has no weight.*Add 'no' \(or "
     r"'negative'\)"),
    (dict(type="multiclass", target="kind", class_weight={"a": 1.0, "b": 2.0}),
     r"training label 'c' of column 'kind' has no weight"),
    (dict(type="multiclass", target="kind", class_weight={"a": 1, "b": 1,
                                                          "c": 1, "e": 1}),
     r"class_weight key 'e' is not a class of column 'kind'"),
    (dict(type="multiclass", target="kind", class_weight=[1.0, 2.0]),
     r"one weight per class; the training labels have 3 classes"),
    (dict(type="multilabel", target="tags", delimiter="|",
          class_weight={"red": 2.0}),
     r"class_weight label 'blue' has no weight"),
    (dict(type="multilabel", target=["m1", "m9"], class_weight="balanced"),
     r"label 'm9' is 0 on every labelled training row"),
])
def test_labels_that_do_not_fit_the_weights_are_data_errors(kwargs, match):
    frame = table().assign(tags=["red", "blue|red", "", "red", None, "blue"],
                           m9=0.0)
    with pytest.raises(DataError, match=match):
        Task("t", **kwargs).fit(frame)


def test_building_the_loss_before_fit_is_an_error():
    with pytest.raises(ConfigError, match=r"resolved on the training labels"):
        Task("yn", "binary", class_weight="balanced").build_loss()


# === Saving ===


def test_keras_round_trip_keeps_class_weights_and_focal_losses(tmp_path):
    frame = table()
    tasks = [
        Task("yn", "binary", positive="yes", class_weight="balanced",
             loss={"name": "focal", "alpha": 0.25, "gamma": 2.0}),
        Task("kind", "multiclass", class_weight={"a": 1.0, "b": 2.0, "c": 4.0},
             loss="focal"),
        Task("tags", "multilabel", target=["m1", "m2"],
             class_weight={"m1": 4.0, "m2": 0.5}),
    ]
    for task in tasks:
        task.fit(frame)
    model, predictions, logs, batch = tiny_model(tasks, frame)
    assert isinstance(model._task_losses["yn"], ClassWeightedLoss)
    path = tmp_path / "weighted.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [t.get_config() for t in loaded.tasks] == [
        t.get_config() for t in tasks]
    assert loaded.tasks[0].get_config()["class_weight"] == "balanced"
    assert [loss.get_config() for loss in loaded._task_losses.values()] == [
        loss.get_config() for loss in model._task_losses.values()]
    again = loaded.test_on_batch(*batch, return_dict=True)
    for key in ("yn_loss", "kind_loss", "tags_loss"):
        np.testing.assert_allclose(float(again[key]), float(logs[key]),
                                   rtol=1e-6)
    loss = ClassWeightedLoss(keras.losses.BinaryCrossentropy(), [[1.0, 4.0]])
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(revived, ClassWeightedLoss)
    assert revived.get_config() == loss.get_config()


# === The run config ===


def test_a_run_config_trains_with_class_weights_and_focal_loss(tmp_path):
    raw = {"name": "imbalanced",
           "data": {"dataset": "penguins"},
           "features": {"numeric": ["bill_length_mm", "flipper_length_mm"]},
           "tasks": [
               {"name": "sex", "type": "binary", "positive": "female",
                "class_weight": "balanced"},
               {"name": "species", "type": "multiclass",
                "loss": {"name": "focal", "gamma": 2.0, "alpha": 0.25}}],
           "model": {"architecture": "shared_bottom", "tower_units": [4]},
           "training": {"epochs": 1, "verbose": 0},
           "export": {"enabled": False}}
    result = train(parse_config(raw), output_dir=str(tmp_path / "runs"),
                   log=lambda line: None)
    saved = yaml.safe_load((Path(result["run_dir"]) / "config.yaml").read_text())
    sex, species = saved["tasks"]
    assert sex["class_weight"] == "balanced"
    assert set(sex["fitted_class_weight"]) == {"positive", "negative"}
    assert species["loss"] == {"name": "focal", "gamma": 2.0, "alpha": 0.25}
    assert math.isfinite(result["metrics"]["test"]["sex"]["loss"])
    with pytest.raises(ConfigError, match=r"class_weight is for"):
        bad = dict(raw, tasks=[{"name": "body_mass_g", "type": "regression",
                                "class_weight": "balanced"}])
        train(parse_config(bad), output_dir=str(tmp_path / "bad"),
              log=lambda line: None)
    assert not (tmp_path / "bad").exists()
