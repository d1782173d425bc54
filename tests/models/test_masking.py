"""Missing labels in `MultiTaskModel`: each task loss is the mean over the rows
labelled for it, checked against losses computed by hand with numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl.data import make_dataset
from kmtl.features import resolve_features
from kmtl.tasks import Task

EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] in cross-entropies.


def _bce(y, p):
    p = np.clip(np.asarray(p, "float64"), EPSILON, 1 - EPSILON)
    y = np.asarray(y, "float64")
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=-1)


def _scce(labels, probabilities):
    probabilities = np.clip(np.asarray(probabilities, "float64"), EPSILON,
                            1 - EPSILON)
    return -np.log(probabilities[np.arange(len(labels)), labels])


def _masked_mean(values, weight):
    weight = np.asarray(weight, "float64")
    return float((values * weight).sum() / weight.sum())


@pytest.fixture
def fitted(tiny_frame):
    tasks = [
        Task("clicked", "binary").fit(tiny_frame),
        Task("kind", "multiclass").fit(tiny_frame),
        Task("price", "regression").fit(tiny_frame),
    ]
    features = resolve_features(tiny_frame, exclude=[t.name for t in tasks])
    features = [f.fit(tiny_frame) for f in features]
    return features, tasks


@pytest.fixture
def model(fitted):
    features, tasks = fitted
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, units=(8,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def _constants(mapping, dtype="float32"):
    return {k: tf.constant(v, dtype=dtype) for k, v in mapping.items()}


# Hand-made labels, predictions and sample weights for four rows.
Y = {
    "clicked": [[1.0], [0.0], [0.0], [1.0]],
    "kind": [1, 0, 2, 0],
    "price": [[10.0], [20.0], [30.0], [40.0]],
}
Y_PRED = {
    "clicked": [[0.9], [0.2], [0.7], [0.4]],
    "kind": [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
    "price": [[12.0], [18.0], [35.0], [0.0]],
}
WEIGHTS = {
    "clicked": [1.0, 1.0, 0.0, 1.0],
    "kind": [1.0, 0.0, 1.0, 1.0],
    "price": [0.0, 1.0, 1.0, 0.0],
}


def _hand_losses(weights, price_std):
    y_price = np.asarray(Y["price"])[:, 0]
    p_price = np.asarray(Y_PRED["price"])[:, 0]
    # Regression loss on standardized values: the mean cancels, the std divides.
    squared = ((y_price - p_price) / price_std) ** 2
    return {
        "clicked": _masked_mean(_bce(Y["clicked"], Y_PRED["clicked"]),
                                weights["clicked"]),
        "kind": _masked_mean(_scce(np.asarray(Y["kind"]), Y_PRED["kind"]),
                             weights["kind"]),
        "price": _masked_mean(squared, weights["price"]),
    }


def _inputs(y):
    y = {
        "clicked": tf.constant(y["clicked"], tf.float32),
        "kind": tf.constant(y["kind"], tf.int32),
        "price": tf.constant(y["price"], tf.float32),
    }
    return y, _constants(Y_PRED)


def test_task_losses_are_means_over_labelled_rows(model, tiny_frame):
    price_std = tiny_frame["price"].std(ddof=0)  # 17.078...
    y, y_pred = _inputs(Y)
    losses = model.compute_task_losses(y, y_pred, _constants(WEIGHTS))
    expected = _hand_losses(WEIGHTS, price_std)
    assert set(losses) == {"clicked", "kind", "price"}
    for name, value in expected.items():
        np.testing.assert_allclose(float(losses[name]), value, rtol=1e-5,
                                   err_msg=name)
    # Spot-check one value fully by hand: rows 0, 1, 3 of `clicked`.
    by_hand = -(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3
    np.testing.assert_allclose(float(losses["clicked"]), by_hand, rtol=1e-5)


def test_without_sample_weight_every_row_counts(model, tiny_frame):
    price_std = tiny_frame["price"].std(ddof=0)
    y, y_pred = _inputs(Y)
    losses = model.compute_task_losses(y, y_pred, None)
    ones = {k: [1.0] * 4 for k in WEIGHTS}
    for name, value in _hand_losses(ones, price_std).items():
        np.testing.assert_allclose(float(losses[name]), value, rtol=1e-5,
                                   err_msg=name)


def test_unlabelled_rows_do_not_change_the_loss(model):
    """Changing the label or prediction of a weight-0 row changes nothing."""
    y, y_pred = _inputs(Y)
    before = model.compute_task_losses(y, y_pred, _constants(WEIGHTS))
    other = {k: np.array(v, "float32") for k, v in Y_PRED.items()}
    other["clicked"][2] = 0.01  # row 2 is unlabelled for `clicked`
    other["kind"][1] = [0.98, 0.01, 0.01]  # row 1 is unlabelled for `kind`
    other["price"][3] = 1e6  # row 3 is unlabelled for `price`
    after = model.compute_task_losses(y, _constants(other), _constants(WEIGHTS))
    for name in before:
        assert float(after[name]) == float(before[name])


def test_batch_without_labels_gives_zero_loss_and_finite_gradient(
        model, fitted, tiny_frame):
    frame = tiny_frame.iloc[:4].copy()  # row 2 also has a missing x1
    frame["clicked"] = np.nan
    features, _ = fitted
    x, y, weights = next(iter(make_dataset(frame, features, model.tasks,
                                           batch_size=4)))
    np.testing.assert_array_equal(weights["clicked"].numpy(), 0.0)
    with tf.GradientTape() as tape:
        y_pred = model.forward(x, training=True)
        losses = model.compute_task_losses(y, y_pred, weights)
        total = model.combine_task_losses(losses)
    assert float(losses["clicked"]) == 0.0
    assert np.isfinite(float(total)) and float(total) > 0
    gradients = tape.gradient(total, model.trainable_weights)
    masked = [v.path for v in model.trainable_weights
              if v.path.startswith("clicked")]
    assert len(masked) == 4  # tower kernel and bias, head kernel and bias
    for variable, gradient in zip(model.trainable_weights, gradients):
        assert gradient is not None, variable.path
        gradient = tf.convert_to_tensor(gradient).numpy()  # embeddings: sparse
        assert np.all(np.isfinite(gradient)), variable.path
        if variable.path.startswith("clicked"):
            # The masked task's own tower and head get exactly no signal.
            np.testing.assert_array_equal(gradient, 0.0, err_msg=variable.path)


def test_fit_on_batches_without_labels_keeps_masked_head(model, fitted,
                                                        tiny_frame):
    frame = tiny_frame.iloc[:4].copy()
    frame["clicked"] = np.nan
    features, _ = fitted
    dataset = make_dataset(frame, features, model.tasks, batch_size=2)
    head = {v.path: v.numpy().copy() for v in model.trainable_weights
            if v.path.startswith("clicked")}
    assert head
    history = model.fit(dataset, epochs=2, shuffle=False, verbose=0)
    assert history.history["clicked_loss"] == [0.0, 0.0]
    for variable in model.trainable_weights:
        assert np.all(np.isfinite(variable.numpy())), variable.path
        if variable.path in head:
            np.testing.assert_array_equal(variable.numpy(), head[variable.path])


@pytest.mark.parametrize("combination", ["sum", "mean"])
def test_combined_loss_with_loss_weights(model, combination):
    model.compile(optimizer="adam", loss_weights={"clicked": 2.0, "price": 0.5},
                  loss_combination=combination)
    task_losses = {"clicked": tf.constant(0.7), "kind": tf.constant(1.3),
                   "price": tf.constant(0.2)}
    weighted = 2.0 * 0.7 + 1.0 * 1.3 + 0.5 * 0.2  # kind keeps its weight of 1
    expected = weighted if combination == "sum" else weighted / 3.5
    total = model.combine_task_losses(task_losses)
    np.testing.assert_allclose(float(total), expected, rtol=1e-6)


def test_task_loss_weight_is_the_default_weight(fitted):
    features, tasks = fitted
    tasks[0].loss_weight = 3.0
    model = kmtl.build_model(features, tasks, units=(4,), tower_units=())
    model.compile(optimizer="adam", loss_combination="mean")
    assert model.loss_weights == {"clicked": 3.0, "kind": 1.0, "price": 1.0}
    total = model.combine_task_losses({"clicked": 1.0, "kind": 2.0, "price": 4.0})
    np.testing.assert_allclose(float(total), (3.0 + 2.0 + 4.0) / 5.0, rtol=1e-6)


@pytest.mark.parametrize("combination", ["sum", "mean"])
def test_evaluate_total_loss_on_one_batch(model, fitted, tiny_frame, combination):
    model.compile(optimizer="adam", loss_weights={"kind": 0.25},
                  loss_combination=combination)
    dataset = make_dataset(tiny_frame, fitted[0], model.tasks,
                           batch_size=len(tiny_frame))
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    weighted = logs["clicked_loss"] + 0.25 * logs["kind_loss"] + logs["price_loss"]
    expected = weighted if combination == "sum" else weighted / 2.25
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


def test_evaluate_task_loss_is_mean_over_labelled_rows_across_batches(
        model, fitted, tiny_frame):
    frame = tiny_frame.copy()
    frame.loc[1, "clicked"] = np.nan  # batch 1 (rows 0-2): one `clicked` label
    frame.loc[4, "price"] = np.nan  # batch 2 (rows 3-5): two `price` labels
    features, _ = fitted
    dataset = make_dataset(frame, features, model.tasks, batch_size=3)
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    predictions = model.predict(make_dataset(frame, features, batch_size=3),
                                verbose=0)

    clicked = frame["clicked"].to_numpy()
    labelled = ~np.isnan(clicked)
    per_row = _bce(np.nan_to_num(clicked)[:, None], predictions["clicked"])
    expected = per_row[labelled].mean()  # rows 0, 3, 4, 5
    np.testing.assert_allclose(logs["clicked_loss"], expected, rtol=1e-5)
    # A mean of the two batch means would weigh row 0 three times as much.
    batch_means = (per_row[:3][labelled[:3]].mean()
                   + per_row[3:][labelled[3:]].mean()) / 2
    assert abs(batch_means - expected) > 1e-4

    price = frame["price"].to_numpy()
    labelled = ~np.isnan(price)
    std = tiny_frame["price"].std(ddof=0)
    squared = ((price - predictions["price"][:, 0]) / std) ** 2
    np.testing.assert_allclose(logs["price_loss"], squared[labelled].mean(),
                               rtol=1e-5)

    codes = frame["kind"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
    np.testing.assert_allclose(logs["kind_loss"],
                               _scce(codes, predictions["kind"]).mean(), rtol=1e-5)
