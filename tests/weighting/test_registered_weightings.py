"""Every registered weighting passes the common checks of `weighting_case`: a
method is under test the day it is registered."""

import keras
import numpy as np
import pytest
from weighting_case import run_weighting_test
from weighting_case import tiny_data
from weighting_case import tiny_model

import kmtl


def test_every_method_is_registered_under_its_standard_name():
    assert kmtl.weighting.list_weightings() == [
        "aligned_mtl", "cagrad", "db_mtl", "dwa", "fairgrad", "famo", "gls",
        "graddrop", "gradnorm", "gradvac", "imtl", "mgda", "nash_mtl", "pcgrad",
        "rlw", "static", "uncertainty", "upgrad"]
    assert type(kmtl.weighting.get("ew")) is type(kmtl.weighting.get("static"))
    assert type(kmtl.weighting.get("uw")) is type(kmtl.weighting.get("uncertainty"))


@pytest.mark.parametrize("name", kmtl.weighting.list_weightings())
def test_registered_weighting(name, tmp_path):
    run_weighting_test(name, tmp_path)


@pytest.mark.parametrize("spec", ["famo", "db_mtl", "fairgrad", "upgrad",
                                  "pcgrad(log_loss=True)"])
def test_a_mixed_precision_fit_with_an_unlabelled_task_stays_finite(spec):
    # float16 activations and a loss-scaled backward pass; "price" has no label
    # in any batch, so its weight must be 0 and nothing may become NaN (the
    # log loss's 1e-8 and FAMO's 1/D must stay in float32).
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = tiny_model()
        model.compile(optimizer=keras.optimizers.Adam(0.01), weighting=spec)
        logs = model.fit(tiny_data(unlabelled="price"), epochs=2,
                         verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(logs["loss"]).all()
    assert np.isfinite(logs["clicked_weight"]).all()
    assert logs["price_weight"] == [0.0, 0.0]
    for variable in [*model.trainable_variables, *model.weighting.variables]:
        assert np.isfinite(np.asarray(variable, "float32")).all(), variable.path


@pytest.mark.parametrize("spec", ["db_mtl", "gradvac", "famo"])
def test_loss_scale_overflows_are_skipped_and_leave_the_state_finite(spec):
    # An initial loss scale of 2**30 overflows float16 gradients: the optimizer
    # skips those steps and halves the scale until the gradients fit. A
    # weighting with state (DB-MTL's and GradVac's moving averages, FAMO's
    # logits) must not take the overflowed step in, or every later step is NaN.
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = tiny_model()
        optimizer = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.Adam(0.01), initial_scale=2.0 ** 30)
        model.compile(optimizer=optimizer, weighting=spec)
        logs = model.fit(tiny_data(), epochs=15, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert float(optimizer.dynamic_scale) < 2.0 ** 20  # overflows happened
    assert int(optimizer.iterations) > 0  # and later steps were applied
    assert np.isfinite(logs["loss"][-1])
    for variable in [*model.trainable_variables, *model.weighting.variables]:
        assert np.isfinite(np.asarray(variable, "float32")).all(), variable.path
