"""Tests for the MMoE paper's synthetic data (kmtl.datasets.synthetic): shapes,
determinism, the weight vectors' geometry, labels against the generating formula,
the correlations it controls, and a frame kmtl trains on as it is."""

import keras
import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl.data import make_dataset
from kmtl.datasets.synthetic import SYNTHETIC_TARGETS
from kmtl.datasets.synthetic import make_synthetic_tasks
from kmtl.datasets.synthetic import synthetic_feature_names
from kmtl.datasets.synthetic import synthetic_tasks
from kmtl.features import resolve_features


def _features(frame):
    return frame[[c for c in frame.columns if c not in SYNTHETIC_TARGETS]].to_numpy()


def test_shape_and_columns():
    frame = make_synthetic_tasks(num_samples=50, num_features=7)
    assert frame.shape == (50, 9)
    assert list(frame.columns) == ["x0", "x1", "x2", "x3", "x4", "x5", "x6", "y1",
                                   "y2"]
    assert synthetic_feature_names(7) == list(frame.columns[:7])
    assert all(pd.api.types.is_float_dtype(frame[c]) for c in frame.columns)
    assert not frame.isna().any().any()


def test_default_shape_is_the_papers_dimension():
    frame, weights = make_synthetic_tasks(num_samples=3, return_weights=True)
    assert frame.shape == (3, 102)
    assert weights["w1"].shape == weights["w2"].shape == (100,)
    assert weights["alpha"].shape == weights["beta"].shape == (10,)


def test_same_seed_same_frame_other_seed_other_frame():
    first = make_synthetic_tasks(200, num_features=10, seed=3)
    pd.testing.assert_frame_equal(first, make_synthetic_tasks(200, num_features=10,
                                                              seed=3))
    other = make_synthetic_tasks(200, num_features=10, seed=4)
    assert not np.allclose(first.to_numpy(), other.to_numpy())


def test_only_w2_depends_on_the_correlation():
    """Same seed, other correlation: same inputs and the same first task."""
    high, w_high = make_synthetic_tasks(300, num_features=10, correlation=0.9,
                                        return_weights=True)
    low, w_low = make_synthetic_tasks(300, num_features=10, correlation=0.1,
                                      return_weights=True)
    np.testing.assert_array_equal(_features(high), _features(low))
    np.testing.assert_array_equal(high["y1"], low["y1"])
    np.testing.assert_array_equal(w_high["w1"], w_low["w1"])
    assert not np.allclose(high["y2"], low["y2"])


def test_more_samples_extend_the_rows():
    small = make_synthetic_tasks(40, num_features=6, seed=1)
    large = make_synthetic_tasks(90, num_features=6, seed=1)
    pd.testing.assert_frame_equal(small, large.iloc[:40])


@pytest.mark.parametrize("correlation", [1.0, 0.9, 0.5, 0.0, -0.5, -1.0])
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_weight_vectors_have_norm_c_and_dot_product_p_c2(correlation, scale):
    _, weights = make_synthetic_tasks(10, num_features=20, correlation=correlation,
                                      scale=scale, seed=7, return_weights=True)
    w1, w2 = weights["w1"], weights["w2"]
    assert w1 @ w2 == pytest.approx(correlation * scale**2, abs=1e-12)
    assert np.linalg.norm(w1) == pytest.approx(scale, abs=1e-12)
    assert np.linalg.norm(w2) == pytest.approx(scale, abs=1e-12)
    cosine = (w1 @ w2) / (np.linalg.norm(w1) * np.linalg.norm(w2))
    assert cosine == pytest.approx(correlation, abs=1e-12)


def test_labels_follow_the_generating_formula():
    """Without noise, y_i = w_i.x + sum_j sin(alpha_j w_i.x + beta_j) exactly."""
    frame, weights = make_synthetic_tasks(
        100, num_features=8, correlation=0.3, num_sinusoids=4, scale=1.5,
        noise_std=0.0, seed=2, return_weights=True)
    x = _features(frame)
    for name, w in (("y1", weights["w1"]), ("y2", weights["w2"])):
        linear = x @ w
        expected = linear + sum(np.sin(a * linear + b) for a, b in
                                zip(weights["alpha"], weights["beta"]))
        np.testing.assert_allclose(frame[name], expected, rtol=1e-12, atol=1e-12)


def test_noise_has_the_requested_standard_deviation():
    exact, weights = make_synthetic_tasks(20000, num_features=5, noise_std=0.0,
                                          return_weights=True)
    noisy = make_synthetic_tasks(20000, num_features=5, noise_std=0.3)
    residual = noisy[["y1", "y2"]].to_numpy() - exact[["y1", "y2"]].to_numpy()
    # Standard error of a standard deviation from 20000 draws: 0.3 / 200.
    np.testing.assert_allclose(residual.std(axis=0), 0.3, atol=0.006)
    np.testing.assert_allclose(residual.mean(axis=0), 0.0, atol=0.006)


def test_without_sinusoids_labels_are_linear():
    frame, weights = make_synthetic_tasks(50, num_features=4, num_sinusoids=0,
                                          noise_std=0.0, return_weights=True)
    np.testing.assert_allclose(frame["y1"], _features(frame) @ weights["w1"],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("correlation", [1.0, 0.9, 0.5, 0.0, -0.5])
def test_linear_parts_have_pearson_correlation_p(correlation):
    """w1.x and w2.x are jointly normal with correlation p; the sample estimate
    from 20000 rows has a standard error below (1 - p^2) / sqrt(20000) < 0.008."""
    frame, weights = make_synthetic_tasks(20000, correlation=correlation, seed=5,
                                          return_weights=True)
    x = _features(frame)
    estimate = np.corrcoef(x @ weights["w1"], x @ weights["w2"])[0, 1]
    assert estimate == pytest.approx(correlation, abs=0.025)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_correlation_falls_with_the_task_correlation(seed):
    label_correlations = []
    for correlation in (1.0, 0.9, 0.5, 0.0):
        frame = make_synthetic_tasks(20000, correlation=correlation, seed=seed)
        label_correlations.append(np.corrcoef(frame["y1"], frame["y2"])[0, 1])
    assert label_correlations[0] > 0.999  # identical tasks up to the noise
    assert all(a > b for a, b in zip(label_correlations, label_correlations[1:]))
    assert abs(label_correlations[-1]) < 0.05


@pytest.mark.parametrize("kwargs, name", [
    ({"num_samples": 0}, "num_samples"),
    ({"num_features": 1}, "num_features"),
    ({"correlation": 1.5}, "correlation"),
    ({"correlation": -1.01}, "correlation"),
    ({"correlation": "0.5"}, "correlation"),
    ({"scale": "1"}, "scale"),
    ({"num_sinusoids": -1}, "num_sinusoids"),
    ({"scale": 0.0}, "scale"),
    ({"noise_std": -0.1}, "noise_std"),
])
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}="):
        make_synthetic_tasks(**kwargs)


def test_kmtl_trains_on_the_frame_as_it_is():
    frame = make_synthetic_tasks(256, num_features=6, correlation=0.5)
    tasks = synthetic_tasks()
    assert [t.target for t in tasks] == ["y1", "y2"]
    assert all(t.type == "regression" for t in tasks)
    for task in tasks:
        task.fit(frame)
    features = resolve_features(frame, numeric=synthetic_feature_names(6))
    for feature in features:
        feature.fit(frame)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "mmoe", num_experts=2,
                             expert_units=[8], tower_units=[4])
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = make_dataset(frame, features, tasks, 64, shuffle=True)
    history = model.fit(data, epochs=5, verbose=0, shuffle=False).history
    for name in ("y1", "y2"):
        assert history[f"{name}_loss"][-1] < history[f"{name}_loss"][0]
    predictions = model.predict(make_dataset(frame.iloc[:10], features), verbose=0)
    assert {k: v.shape for k, v in predictions.items()} == {"y1": (10, 1),
                                                            "y2": (10, 1)}
