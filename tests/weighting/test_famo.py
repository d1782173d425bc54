"""FAMO: the weights and logit steps of the paper's update on a two-task example
worked by hand (and against a numpy transcription of the update for random
losses and masks), the weights on the simplex, validation leaving the state
alone, a mixed-precision fit, and its refusals. The checks every method shares
are in `test_registered_weightings.py`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from weighting_case import check_config_round_trip
from weighting_case import tiny_data
from weighting_case import tiny_model

import kmtl
from kmtl.errors import ConfigError


def _built(spec="famo", tasks=2):
    weighting = kmtl.weighting.get(spec)
    weighting.build_tasks([f"t{i}" for i in range(tasks)])
    return weighting


def _step(weighting, losses, labelled=None):
    """One train step's calls: observe the losses, then weight them."""
    losses = tf.constant(losses, tf.float32)
    labelled = tf.constant([True] * len(losses) if labelled is None else labelled)
    weighting.observe_losses(losses, labelled)
    total, weights = weighting.combine_losses(losses, labelled)
    return float(total), weights.numpy()


def test_weights_and_logit_steps_by_hand():
    famo = _built()
    # Step 1: z = (.5, .5), c = 1 / (.5 / 1 + .5 / 4) = 1.6, w = c z / L; the
    # total's value is the objective z . log L = .5 ln 4.
    total, weights = _step(famo, [1.0, 4.0])
    np.testing.assert_allclose(weights, [0.8, 0.2], rtol=1e-6)
    assert total == pytest.approx(0.5 * np.log(4.0), rel=1e-6)
    np.testing.assert_array_equal(famo.logits.numpy(), [0.0, 0.0])
    # Step 2: delta = (ln 2, ln(4 / 3.6)); the first Adam step is lr * sign.
    total, weights = _step(famo, [0.5, 3.6])
    np.testing.assert_allclose(famo.logits.numpy(), [-0.025, 0.025], rtol=1e-5)
    np.testing.assert_allclose(weights, [0.872593, 0.127407], rtol=1e-5)
    # z = softmax(-0.025, 0.025) = (0.487503, 0.512497).
    assert total == pytest.approx(0.487503 * np.log(0.5) + 0.512497 * np.log(3.6),
                                  rel=1e-5)
    # Step 3: task 2 fell faster, but Adam's momentum keeps the direction.
    _, weights = _step(famo, [0.45, 3.0])
    np.testing.assert_allclose(famo.logits.numpy(), [-0.039191, 0.039191],
                               rtol=1e-4)
    np.testing.assert_allclose(weights, [0.860415, 0.139585], rtol=1e-5)
    assert weights.sum() == pytest.approx(1.0, rel=1e-6)


def test_the_total_has_the_weighted_gradient_and_the_objective_value():
    famo = _built(tasks=3)
    losses = tf.Variable([0.5, 2.0, 8.0])
    labelled = tf.constant([True, False, True])
    with tf.GradientTape() as tape:
        total, weights = famo.combine_losses(losses, labelled)
    # z = (.5, 0, .5) over the labelled tasks; c = 1 / (.5 / .5 + .5 / 8).
    c = 1.0 / (1.0 + 0.0625)
    np.testing.assert_allclose(weights.numpy(), [c, 0.0, c / 16], rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, losses).numpy(), weights.numpy(),
                               rtol=1e-6)
    assert float(total) == pytest.approx(0.5 * np.log(0.5) + 0.5 * np.log(8.0),
                                         rel=1e-6)
    # Doubling the larger loss adds .5 ln 2 to the value (c, the value of
    # sum w L, would only move from 0.941 to 0.970).
    doubled, _ = famo.combine_losses(tf.constant([0.5, 2.0, 16.0]), labelled)
    assert float(doubled) - float(total) == pytest.approx(0.5 * np.log(2.0),
                                                          rel=1e-5)


def test_same_batch_updates_give_the_references_logits_one_step_earlier():
    famo = _built("famo(update='same_batch')")
    assert famo.observes_losses_after_step
    _, weights = _step(famo, [1.0, 4.0])
    np.testing.assert_allclose(weights, [0.8, 0.2], rtol=1e-6)
    famo.observe_losses_after_step(tf.constant([0.5, 3.6]), tf.constant([True] * 2))
    np.testing.assert_allclose(famo.logits.numpy(), [-0.025, 0.025], rtol=1e-5)
    # The next batch's losses set the next delta's start, not the logits.
    _, weights = _step(famo, [0.5, 3.6])
    np.testing.assert_allclose(famo.logits.numpy(), [-0.025, 0.025], rtol=1e-5)
    np.testing.assert_allclose(weights, [0.872593, 0.127407], rtol=1e-5)


def test_same_batch_mode_reads_the_losses_after_the_update():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  weighting="famo(update='same_batch')")
    batch = next(iter(tiny_data(batch_size=32)))
    before = model.test_on_batch(*batch, return_dict=True)
    model.train_on_batch(*batch)
    after = model.test_on_batch(*batch, return_dict=True)
    # z = (.5, .5): the first Adam step is -0.025 sign(delta_1 - delta_2).
    delta = [np.log(before[f"{n}_loss"] / after[f"{n}_loss"])
             for n in ("clicked", "price")]
    sign = np.sign(delta[0] - delta[1])
    assert sign != 0
    np.testing.assert_allclose(model.weighting.logits.numpy(),
                               [-0.025 * sign, 0.025 * sign], rtol=1e-4)


def _reference(steps, lr=0.025, gamma=1e-3):
    """A numpy transcription of the update (kmtl's next-batch form), float64:
    `steps` is a list of `(losses, labelled)`; returns each step's weights."""
    tasks = len(steps[0][0])
    xi, m, v, k = (np.zeros(tasks) for _ in range(4))
    previous, previous_mask = np.zeros(tasks), np.zeros(tasks)
    out = []
    for losses, labelled in steps:
        mask = np.asarray(labelled, float)
        log_now = np.where(mask > 0, np.log(np.asarray(losses) + 1e-8), 0.0)
        valid = mask * previous_mask
        if valid.any():
            z = valid * np.exp(xi - xi[valid > 0].max())
            z /= z.sum()
            delta = valid * (previous - log_now)
            g = z * (delta - z @ delta) + gamma * xi
            k = k + valid
            m = np.where(valid > 0, 0.9 * m + 0.1 * g, m)
            v = np.where(valid > 0, 0.999 * v + 0.001 * g ** 2, v)
            kk = np.maximum(k, 1)
            step = lr * (m / (1 - 0.9 ** kk)) / (np.sqrt(v / (1 - 0.999 ** kk))
                                                + 1e-8)
            xi = np.where(valid > 0, xi - step, xi)
        previous = np.where(mask > 0, log_now, previous)
        previous_mask = mask
        z = mask * np.exp(xi - xi.max())
        z /= max(z.sum(), 1e-300)
        d = np.where(mask > 0, np.asarray(losses) + 1e-8, 1.0)
        out.append(mask * (z / d) / max((z / d).sum(), 1e-300))
    return np.array(out)


def test_masked_steps_move_only_the_tasks_labelled_in_both_batches():
    famo = _built()
    _step(famo, [1.0, 4.0])
    _step(famo, [0.5, 3.6])
    logit = famo.logits.numpy()[1]  # 0.025
    # Task 2 unlabelled: weight (1, 0); its logit and Adam count stay.
    _, weights = _step(famo, [0.45, 0.0], [True, False])
    np.testing.assert_allclose(weights, [1.0, 0.0], rtol=1e-6)
    assert famo.logits.numpy()[1] == logit
    # Task 2 labelled again: still no delta for it (unlabelled before).
    _, weights = _step(famo, [0.4, 3.0])
    np.testing.assert_array_equal(famo.adam_steps.numpy(), [3.0, 1.0])
    assert famo.logits.numpy()[1] == logit
    # Over task 1 alone the softmax gradient is 0: only the decay moves it.
    expected = _reference([([1.0, 4.0], [1, 1]), ([0.5, 3.6], [1, 1]),
                           ([0.45, 0.0], [1, 0]), ([0.4, 3.0], [1, 1])])
    np.testing.assert_allclose(weights, expected[-1], rtol=1e-5)
    for variable in famo.variables:
        assert np.isfinite(np.asarray(variable)).all()


def test_weights_stay_on_the_simplex_and_follow_the_update():
    rng = np.random.default_rng(0)
    famo = _built(tasks=4)
    steps, got = [], []
    for _ in range(150):
        labelled = rng.random(4) < 0.8
        losses = np.where(labelled, rng.lognormal(0.0, 2.0, 4), 0.0)
        steps.append((losses, labelled))
        _, weights = _step(famo, losses.astype("float32"), labelled.tolist())
        got.append(weights)
        assert (weights >= 0).all() and (weights[~labelled] == 0).all()
        if labelled.any():
            assert weights.sum() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(got, _reference(steps), rtol=2e-3, atol=1e-6)


def test_validation_and_evaluate_leave_the_state_alone():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), weighting="famo")
    model.fit(tiny_data(), epochs=2, verbose=0)
    state = [np.asarray(v).copy() for v in model.weighting.variables]
    assert np.abs(state[0]).max() > 0  # the logits moved while training
    model.evaluate(tiny_data(), verbose=0)
    for variable, before in zip(model.weighting.variables, state):
        np.testing.assert_array_equal(np.asarray(variable), before)


def test_arguments_config_and_refusals():
    famo = kmtl.weighting.get(
        "famo(learning_rate=0.01, weight_decay=0.0, min_losses=[0.1, 0.2], "
        "update='same_batch')")
    check_config_round_trip(famo)
    famo.build_tasks(["a", "b"])
    # L* shifts the gaps: D = (1 - 0.1, 4 - 0.2) -> w = (3.8, 0.9) / 4.7.
    _, weights = _step(famo, [1.0, 4.0])
    np.testing.assert_allclose(weights, [3.8 / 4.7, 0.9 / 4.7], rtol=1e-5)
    with pytest.raises(ConfigError, match="'famo' does not take log_loss=True"):
        kmtl.weighting.get("famo(log_loss=True)")
    for spec in ("famo(learning_rate=0)", "famo(weight_decay=-1)",
                 "famo(update='after')"):
        with pytest.raises(ConfigError, match="famo"):
            kmtl.weighting.get(spec)
    with pytest.raises(ValueError, match="one number per task"):
        kmtl.weighting.get("famo(min_losses=[0.0])").build_tasks(["a", "b"])


@pytest.mark.parametrize("update", ["next_batch", "same_batch"])
def test_the_update_compiles_with_xla(update):
    eager, graph = (_built(f"famo(update={update!r})", tasks=3) for _ in range(2))
    labelled = tf.constant([True, False, True])

    def step(weighting, losses, after):
        weighting.observe_losses(losses, labelled)
        result = weighting.combine_losses(losses, labelled)
        weighting.observe_losses_after_step(after, labelled)
        return result

    @tf.function(jit_compile=True)
    def compiled(losses, after):
        return step(graph, losses, after)

    for losses in ([1.0, 0.0, 4.0], [0.5, 0.0, 3.6], [0.45, 0.0, 3.0]):
        # Different rates per task (equal ones make the Adam step the sign of
        # rounding noise).
        losses = tf.constant(losses)
        after = losses * tf.constant([0.9, 1.0, 0.7])
        for got, want in zip(compiled(losses, after), step(eager, losses, after)):
            np.testing.assert_allclose(got, want, rtol=1e-5)
    for got, want in zip(graph.variables, eager.variables):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
