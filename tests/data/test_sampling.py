"""Task sampling (`kmtl.data.make_sampled_dataset`) and the `TaskFrequencies`
callback: requested probabilities by hand, realised frequencies within a
binomial bound, batch composition and masks, absent tasks' zero loss,
determinism and resume, and errors naming the key."""

import keras
import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl.callbacks import TaskFrequencies
from kmtl.data import TaskSampling
from kmtl.data import make_sampled_dataset
from kmtl.data import task_probabilities
from kmtl.errors import ConfigError
from kmtl.features import Feature

NAMES = ("a", "b", "c")
SIZES = np.array([900, 400, 100])
BATCH = 50


def _frame():
    """1,300 rows: rows 0-99 labelled for a and b, 100-899 for a only,
    900-1199 for b only, 1200-1299 for c only (n = 900, 400, 100). `row` is
    the row number, read back from raw batches."""
    rows = np.arange(1300)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"row": rows.astype("float64"),
                          "x": rng.normal(size=len(rows)),
                          "color": np.array(["red", "blue", "green"])[rows % 3]})
    frame["a"] = np.where(rows < 900, rows % 2, np.nan)
    frame["b"] = np.where((rows < 100) | ((rows >= 900) & (rows < 1200)),
                          (rows // 3) % 2, np.nan)
    frame["c"] = np.where(rows >= 1200, rng.normal(size=len(rows)), np.nan)
    return frame


@pytest.fixture(scope="module")
def data():
    frame = _frame()
    tasks = [kmtl.Task("a", "binary", target="a"),
             kmtl.Task("b", "binary", target="b"),
             kmtl.Task("c", "regression", target="c")]
    for task in tasks:
        task.fit(frame)
    features = [Feature("row", "numeric").fit(frame),
                Feature("x", "numeric").fit(frame),
                Feature("color", "categorical").fit(frame)]
    return frame, features, tasks


def _sampled(data, sampling, **kwargs):
    frame, features, tasks = data
    kwargs.setdefault("batch_size", BATCH)
    return make_sampled_dataset(frame, features, tasks, sampling, **kwargs)


def _epoch(sampled):
    """One pass: `(rows drawn per task (tasks,), task of each batch row
    (steps, batch), raw row ids or None)`, from the batches' weights."""
    drawn, owners = np.zeros(len(NAMES), "int64"), []
    for _, _, weights in sampled.dataset:
        stacked = np.stack([weights[n].numpy() for n in NAMES], axis=1)
        # Each row counts for one task: one non-zero weight, equal to 1.
        assert np.all((stacked > 0).sum(axis=1) == 1)
        assert np.all(stacked.max(axis=1) == 1.0)
        owners.append(stacked.argmax(axis=1))
        drawn += (stacked > 0).sum(axis=0)
    return drawn, np.stack(owners)


# --- requested probabilities --------------------------------------------------


def test_task_probabilities_by_hand():
    np.testing.assert_allclose(task_probabilities(SIZES, 0.0), [1 / 3] * 3)
    np.testing.assert_allclose(task_probabilities(SIZES, 1.0),
                               [9 / 14, 4 / 14, 1 / 14])
    # Temperature 2: sqrt(n) = 30, 20, 10.
    np.testing.assert_allclose(task_probabilities(SIZES, 0.5), [1 / 2, 1 / 3, 1 / 6])
    # n^3 of a million would be 1e18; the logs keep it exact.
    np.testing.assert_allclose(task_probabilities([10**6, 10**2], 3.0),
                               [1 / (1 + 1e-12), 1e-12 / (1 + 1e-12)])


def test_anneal_exponents_move_linearly_per_step():
    sampling = TaskSampling(method="anneal", anneal_epochs=2)  # 1 -> 0.2
    # 2 epochs of 4 steps: alpha = 1 - 0.8 s / 7 at global step s = 0..7.
    np.testing.assert_allclose(sampling.exponents(0, 4),
                               1 - 0.8 * np.arange(4) / 7)
    np.testing.assert_allclose(sampling.exponents(1, 4),
                               1 - 0.8 * np.arange(4, 8) / 7)
    np.testing.assert_allclose(sampling.exponents(5, 4), [0.2] * 4)
    uniform_start = TaskSampling(method="anneal", start="uniform", end=2,
                                 anneal_epochs=1)
    np.testing.assert_allclose(uniform_start.exponents(0, 3), [0.0, 0.25, 0.5])


def test_default_epoch_is_one_draw_per_label(data):
    # 900 + 400 + 100 (row, task) labels in batches of 50: 28 steps.
    sampled = _sampled(data, None)
    assert sampled.steps_per_epoch == 28
    assert int(sampled.dataset.cardinality()) == 28
    np.testing.assert_array_equal(sampled.sizes, SIZES)


# --- realised frequencies -----------------------------------------------------

# Each of N draws picks task t with probability p_t, so the realised share f_t
# has standard deviation at most sqrt(pbar (1 - pbar) / N), pbar the mean of
# the per-step p_t (the variance of a sum of Bernoulli draws is largest when
# their probabilities are equal). |f - pbar| <= 4 sigma fails by chance with
# probability < 1e-4 per task; the seed is fixed, so the test is deterministic.
METHODS = [
    ({"method": "uniform"}, [1 / 3, 1 / 3, 1 / 3]),
    ({"method": "proportional"}, [9 / 14, 4 / 14, 1 / 14]),
    ({"method": "temperature", "temperature": 2}, [1 / 2, 1 / 3, 1 / 6]),
]


def _assert_within_bound(drawn, expected, draws):
    frequencies = drawn / drawn.sum()
    bound = 4 * np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(frequencies - expected) <= bound), (frequencies, expected)


@pytest.mark.parametrize("composition", ["joint", "interleaved"])
@pytest.mark.parametrize(("options", "expected"), METHODS)
def test_realised_frequencies_match_requested(data, composition, options,
                                              expected):
    steps = 200 if composition == "joint" else 600
    sampled = _sampled(data, TaskSampling(composition, steps_per_epoch=steps,
                                          **options))
    np.testing.assert_allclose(sampled.probabilities(0),
                               np.tile(expected, (steps, 1)))
    before = sampled.counts.numpy()
    drawn, _ = _epoch(sampled)
    # The pipeline's counter saw the same rows as the batches hold.
    np.testing.assert_array_equal(sampled.counts.numpy() - before, drawn)
    # Joint draws a task per row, interleaved one per batch.
    draws = steps * BATCH if composition == "joint" else steps
    _assert_within_bound(drawn, np.array(expected), draws)


@pytest.mark.parametrize("composition", ["joint", "interleaved"])
def test_annealed_frequencies_first_and_last_epoch(data, composition):
    steps = 100 if composition == "joint" else 400
    sampling = TaskSampling(composition, "anneal", start="proportional",
                            end="uniform", anneal_epochs=3, steps_per_epoch=steps)
    sampled = _sampled(data, sampling, seed=3)
    draws = steps * BATCH if composition == "joint" else steps
    first = sampled.probabilities(0).mean(axis=0)
    last = sampled.probabilities(2).mean(axis=0)
    # Epoch 0: alpha 1 -> 2/3, epoch 2: alpha 1/3 -> 0; far apart.
    assert first[0] - last[0] > 0.15
    for epoch in range(3):
        drawn, _ = _epoch(sampled)
        if epoch in (0, 2):
            expected = first if epoch == 0 else last
            _assert_within_bound(drawn, expected, draws)


# --- batch composition and masks ----------------------------------------------


def test_interleaved_batches_hold_one_task_and_joint_batches_mix(data):
    interleaved = _sampled(data, TaskSampling("interleaved", "uniform"))
    _, owners = _epoch(interleaved)
    assert np.all(owners == owners[:, :1])
    assert set(owners[:, 0]) == {0, 1, 2}
    joint = _sampled(data, TaskSampling("joint", "uniform"))
    _, owners = _epoch(joint)
    assert all(len(set(batch)) == 3 for batch in owners)


@pytest.mark.parametrize("composition", ["joint", "interleaved"])
def test_rows_are_labelled_for_their_task_and_masked_for_others(data,
                                                                composition):
    frame, features, tasks = data
    sampled = make_sampled_dataset(frame, features, tasks,
                                   TaskSampling(composition, "uniform"),
                                   batch_size=BATCH, encoded=False)
    shared_rows_drawn = 0
    for x, labels, weights in sampled.dataset:
        rows = x["row"].numpy()[:, 0].astype(int)
        np.testing.assert_array_equal(x["color"].numpy()[:, 0].astype(str),
                                      frame["color"].iloc[rows])
        for name in NAMES:
            mine = weights[name].numpy() > 0
            # Every row drawn for a task is labelled for it, with its label.
            assert frame[name].iloc[rows[mine]].notna().all()
            np.testing.assert_array_equal(
                labels[name].numpy().reshape(len(rows), -1)[mine, 0],
                frame[name].iloc[rows[mine]].to_numpy("float32"))
        # Rows 0-99 are labelled for a and b but count for the drawn one only.
        shared = rows < 100
        both = (weights["a"].numpy() > 0) & (weights["b"].numpy() > 0)
        assert not both.any()
        shared_rows_drawn += int(shared.sum())
    assert shared_rows_drawn > 0


def test_small_task_passes_are_permutations(data):
    # c has 100 rows; interleaved uniform draws about 9 of its batches of 50
    # per epoch: passes 0, 1, ... are each a permutation of its rows.
    frame, features, tasks = data
    sampled = make_sampled_dataset(frame, features, tasks,
                                   TaskSampling("interleaved", "uniform"),
                                   batch_size=BATCH, encoded=False)
    stream = [x["row"].numpy()[:, 0].astype(int)
              for x, _, w in sampled.dataset if w["c"].numpy().any()]
    stream = np.concatenate(stream)
    assert len(stream) >= 200
    for start in range(0, len(stream) - 99, 100):
        np.testing.assert_array_equal(np.sort(stream[start:start + 100]),
                                      np.arange(1200, 1300))
    assert not np.array_equal(stream[:100], stream[100:200])


# --- absent tasks -------------------------------------------------------------


@pytest.mark.parametrize("weighting", [None, "pcgrad"])
def test_absent_task_adds_exactly_zero_loss(data, weighting):
    frame, features, tasks = data
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,),
                             tower_units=())
    model.compile(optimizer=keras.optimizers.SGD(0.1), weighting=weighting)
    sampled = _sampled(data, TaskSampling("interleaved", "uniform"))
    batches = {}
    for x, y, w in sampled.dataset:
        present = next(n for n in NAMES if w[n].numpy().any())
        batches.setdefault(present, (x, y, w))
    for present, (x, y, w) in sorted(batches.items()):
        logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
        for name in NAMES:
            if name != present:
                assert logs[f"{name}_loss"] == 0.0
        assert logs[f"{present}_loss"] > 0.0
        assert np.isfinite(logs["loss"])
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


# --- determinism and resume ---------------------------------------------------


def _batches(dataset):
    return [(x["encoded:numeric"].numpy(), {n: w[n].numpy() for n in NAMES})
            for x, _, w in dataset]


def _assert_same(one, other):
    assert len(one) == len(other)
    for (x1, w1), (x2, w2) in zip(one, other):
        np.testing.assert_array_equal(x1, x2)
        for name in NAMES:
            np.testing.assert_array_equal(w1[name], w2[name])


@pytest.mark.parametrize("composition", ["joint", "interleaved"])
def test_same_seed_same_batches_and_resume(data, composition):
    sampling = TaskSampling(composition, "anneal", anneal_epochs=3,
                            steps_per_epoch=6)
    fresh = _sampled(data, sampling, seed=7)
    epochs = [_batches(fresh.dataset) for _ in range(3)]
    _assert_same(epochs[0], _batches(_sampled(data, sampling, seed=7).dataset))
    # Another epoch, another draw; another seed, other batches.
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])
    other = _batches(_sampled(data, sampling, seed=8).dataset)
    assert not np.array_equal(epochs[0][0][0], other[0][0])
    # A run resumed after 2 epochs sees the third epoch of a fresh one.
    resumed = _sampled(data, sampling, seed=7, first_epoch=2)
    _assert_same(epochs[2], _batches(resumed.dataset))


def test_task_frequencies_callback_logs_each_epochs_shares(data):
    frame, features, tasks = data
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "shared_bottom", units=(4,),
                             tower_units=())
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    sampling = TaskSampling("joint", "anneal", start="uniform",
                            end="proportional", anneal_epochs=2,
                            steps_per_epoch=8)
    sampled = _sampled(data, sampling, seed=5)
    history = model.fit(sampled.dataset, epochs=2, verbose=0,
                        callbacks=[TaskFrequencies(sampled)]).history
    # The same batches, drawn again by a dataset with the same seed.
    replay = _sampled(data, sampling, seed=5)
    for epoch in range(2):
        drawn, _ = _epoch(replay)
        for t, name in enumerate(NAMES):
            assert history[f"{name}_frequency"][epoch] == pytest.approx(
                drawn[t] / (8 * BATCH))
    assert int(sampled.counts.numpy().sum()) == 2 * 8 * BATCH


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize(("options", "key"), [
    ({"temperature": 0}, "temperature"),
    ({"temperature": -2.0}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"composition": "mixed"}, "composition"),
    ({"method": "softmax"}, "method"),
    ({"method": "anneal"}, "anneal_epochs"),
    ({"method": "anneal", "anneal_epochs": 0}, "anneal_epochs"),
    ({"start": "cold"}, "start"),
    ({"end": 0}, "end"),
    ({"steps_per_epoch": 0}, "steps_per_epoch"),
    ({"steps_per_epoch": 2.5}, "steps_per_epoch"),
])
def test_bad_sampling_names_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        TaskSampling(**options)


def test_bad_arguments_name_the_key(data):
    with pytest.raises(ConfigError, match="tempreature"):
        TaskSampling.get({"method": "temperature", "tempreature": 2})
    assert TaskSampling.get("uniform") == TaskSampling(method="uniform")
    with pytest.raises(ConfigError, match="batch_size"):
        _sampled(data, None, batch_size=0)
    with pytest.raises(ConfigError, match="first_epoch"):
        _sampled(data, None, first_epoch=-1)
    frame, features, tasks = data
    unlabelled = frame.assign(c=np.nan)
    with pytest.raises(ConfigError, match="'c'"):
        make_sampled_dataset(unlabelled, features, tasks)


def test_sampled_training_survives_a_keras_round_trip_mid_run(data, tmp_path):
    # Annealed sampling, 4 epochs at once, or 2, save, load, 2 more from a
    # dataset starting at epoch 2: the same batches, so the same weights.
    frame, features, tasks = data
    sampling = TaskSampling("interleaved", "anneal", start="uniform",
                            end="proportional", anneal_epochs=4,
                            steps_per_epoch=6)

    def model():
        keras.utils.set_random_seed(0)
        built = kmtl.build_model(features, tasks, units=(8,), tower_units=())
        built.compile(optimizer=keras.optimizers.Adam(0.01))
        return built

    whole = model()
    whole.fit(_sampled(data, sampling).dataset, epochs=4, verbose=0)
    first = model()
    first.fit(_sampled(data, sampling).dataset, epochs=2, verbose=0)
    first.save(tmp_path / "mid.keras")
    again = keras.saving.load_model(tmp_path / "mid.keras")
    again.fit(_sampled(data, sampling, first_epoch=2).dataset, epochs=4,
              initial_epoch=2, verbose=0)
    for a, b in zip(again.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
