"""Tests for sharing diagnostics: `kmtl.measures.diagnostics`, the `SharingDiagnostics`
callback and `kmtl.plotting.heatmap`, against hand-computed gate weights."""

import glob
import math
import os

import keras
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from keras import ops
from matplotlib.figure import Figure

import kmtl
from kmtl.architectures import Architecture
from kmtl.callbacks.sharing_diagnostics import SharingDiagnostics
from kmtl.data import make_dataset
from kmtl.features import Feature
from kmtl.measures import diagnostics
from kmtl.plotting.heatmap import plot_heatmap

EXPERTS = ["expert_0", "expert_1"]


@keras.saving.register_keras_serializable(package="kmtl_test")
class GatedTestLayer(Architecture):
    """Passes its input to every task; its "gates" are fixed functions of the
    input: task 0 takes `softmax(x[:, 0], x[:, 1])`, task 1 the swapped logits."""

    def owned_slices(self):
        return {}

    def call(self, inputs, training=None):
        return {name: inputs for name in self.task_names}

    def compute_output_shape(self, input_shape):
        return {name: input_shape for name in self.task_names}

    def diagnostics(self, inputs):
        logits = ops.stack([inputs[:, :2], ops.flip(inputs[:, :2], axis=1)])
        gates = ops.mean(ops.softmax(logits, axis=-1), axis=1)
        return {"gate_mean": (gates, self.task_names, EXPERTS)}


@keras.saving.register_keras_serializable(package="kmtl_test")
class MixingTestLayer(Architecture):
    """Input-independent sharing, like cross-stitch units: a `(T, T)` weight
    whose row t scales task t's output alone."""

    def owned_slices(self):
        return self.slices_owned_by([self.alpha], self.task_names)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            shape=(2, 2), name="alpha",
            initializer=keras.initializers.Constant([[0.9, 0.1], [0.2, 0.8]]))

    def call(self, inputs, training=None):
        return {name: inputs * ops.sum(self.alpha[t])
                for t, name in enumerate(self.task_names)}

    def compute_output_shape(self, input_shape):
        return {name: input_shape for name in self.task_names}

    def diagnostics(self, inputs):
        return {"alpha": (self.alpha, self.task_names, self.task_names)}


# Architecture input = normalized (a, b) with mean 0, variance 1, then two missing
# indicators. Gates of task p = softmax(a, b), of task q = softmax(b, a):
#   row 0 (0, ln 3): p = (1/4, 3/4), q = (3/4, 1/4)
#   row 1 (ln 4, 0): p = (4/5, 1/5), q = (1/5, 4/5)
#   row 2 (0, 0):    p = q = (1/2, 1/2)
FRAME = pd.DataFrame({"a": [0.0, math.log(4.0), 0.0],
                      "b": [math.log(3.0), 0.0, 0.0],
                      "p": [1.0, 2.0, 3.0], "q": [3.0, 1.0, 2.0]})
FIRST_BATCH = [[0.525, 0.475], [0.475, 0.525]]           # rows 0 and 1
ALL_ROWS = [[1.55 / 3, 1.45 / 3], [1.45 / 3, 1.55 / 3]]  # rows 0, 1, 2


def _setup(architecture):
    features = [Feature(n, "numeric", mean=0.0, variance=1.0) for n in "ab"]
    tasks = [kmtl.Task(n, "regression", target=n) for n in "pq"]
    for task in tasks:
        task.fit(FRAME)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, architecture, tower_units=())
    model.compile(optimizer="sgd")
    return model, make_dataset(FRAME, features, tasks, batch_size=2)


def _frame(values, index, columns):
    return pd.DataFrame(values, index=index, columns=columns)


@pytest.fixture(scope="module")
def gated():
    return _setup(GatedTestLayer(["p", "q"], name="gated"))


@pytest.fixture(scope="module")
def mixing():
    return _setup(MixingTestLayer(["p", "q"], name="mixing"))


# --- diagnostics.sharing ---------------------------------------------------------


def test_architecture_layer_finds_the_diagnostics_layer(gated):
    model, _ = gated
    assert diagnostics.architecture_layer(model) is model.get_layer("gated")


def test_sharing_first_batch_hand_computed(gated):
    model, data = gated
    frames = diagnostics.sharing(model, data)
    assert list(frames) == ["gate_mean"]
    pd.testing.assert_frame_equal(
        frames["gate_mean"], _frame(FIRST_BATCH, ["p", "q"], EXPERTS), rtol=1e-6)


def test_sharing_averages_over_rows_not_batches(gated):
    model, data = gated
    expected = _frame(ALL_ROWS, ["p", "q"], EXPERTS)
    # Batches of 2 and 1 rows: the mean over the 3 rows (0.5167), not the mean
    # of the two batch means (0.5125).
    for batches in (2, 5):
        pd.testing.assert_frame_equal(
            diagnostics.sharing(model, data, batches=batches)["gate_mean"], expected,
            rtol=1e-6)
    # A dict of arrays is one batch; extra columns are ignored.
    arrays = {n: FRAME[n].to_numpy("float32") for n in ("a", "b", "p")}
    pd.testing.assert_frame_equal(
        diagnostics.sharing(model, arrays)["gate_mean"], expected, rtol=1e-6)
    # An (x, y, w) tuple is one batch of x.
    pd.testing.assert_frame_equal(
        diagnostics.sharing(model, next(iter(data)))["gate_mean"],
        _frame(FIRST_BATCH, ["p", "q"], EXPERTS), rtol=1e-6)


def test_encoder_is_built_once_per_model(gated):
    model, data = gated
    x = next(iter(data))[0]
    diagnostics.sharing(model, data)
    layer, encoder = diagnostics._encoder(model, x)
    diagnostics.sharing(model, data)
    assert diagnostics._encoder(model, x)[1] is encoder and layer.name == "gated"
    # The encoder stops at the architecture input: (a, b, missing_a, missing_b).
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(encoder(x)),
        [[0.0, math.log(3.0), 0.0, 0.0], [math.log(4.0), 0.0, 0.0, 0.0]], rtol=1e-6)


def test_sharing_input_independent_layer_without_data(mixing):
    model, data = mixing
    expected = _frame([[0.9, 0.1], [0.2, 0.8]], ["p", "q"], ["p", "q"])
    pd.testing.assert_frame_equal(diagnostics.sharing(model)["alpha"], expected,
                                  rtol=1e-6)
    pd.testing.assert_frame_equal(diagnostics.sharing(model, data, 2)["alpha"],
                                  expected, rtol=1e-6)


def test_sharing_errors(gated):
    model, data = gated
    with pytest.raises(ValueError, match="'gated' depend on its inputs: pass `data`"):
        diagnostics.sharing(model, None)
    with pytest.raises(ValueError, match=r"lacks the model's feature\(s\) \['b'\]"):
        diagnostics.sharing(model, {"a": np.zeros(3, "float32")})
    with pytest.raises(ValueError, match="batches must be a positive integer"):
        diagnostics.sharing(model, data, batches=0)
    with pytest.raises(ValueError, match="no rows"):
        diagnostics.sharing(model, data.take(0))
    with pytest.raises(TypeError, match="Received: str"):
        diagnostics.sharing(model, "validation.csv")


def test_architecture_without_diagnostics_raises():
    model, data = _setup("shared_bottom")
    message = (r"The architecture 'shared_bottom' of model 'shared_bottom_model' "
               r"\(SharedBottom\) has no sharing diagnostics: .* Build it with an "
               r"architecture that shares inspectably, one of \['cgc', "
               r"'cross_stitch', 'mmoe', 'mtan', 'ple', 'soft_sharing'\], e.g. "
               r"`kmtl.build_model\(features, tasks, architecture='mmoe'\)`.")
    with pytest.raises(ValueError, match=message):
        diagnostics.architecture_layer(model)
    with pytest.raises(ValueError, match=message):
        diagnostics.sharing(model, data)


def test_model_without_architecture_raises():
    """A graph wired by hand from plain layers has no architecture to
    inspect."""
    inputs = {"a": keras.Input((1,), name="a")}
    outputs = {"p": keras.layers.Dense(1, name="p")(inputs["a"])}
    task = kmtl.Task("p", "regression", target="p")
    task.fit(FRAME)
    model = kmtl.MultiTaskModel(inputs, outputs, tasks=[task], name="by_hand")
    with pytest.raises(ValueError, match=r"Model 'by_hand' has no architecture "
                                         r"layer .* one of \['cgc', "):
        diagnostics.architecture_layer(model)


# --- SharingDiagnostics --------------------------------------------------------


def test_callback_adds_sharing_values_to_logs(gated):
    model, data = gated
    callback = SharingDiagnostics(data, every=2, batches=2)
    callback.set_model(model)
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0}  # only every second epoch
    callback.on_epoch_end(1, logs)
    frame = diagnostics.sharing(model, data, batches=2)["gate_mean"]
    expected = {f"gate_mean/{row}/{column}": frame.loc[row, column]
                for row in ("p", "q") for column in EXPERTS}
    assert logs == {"loss": 1.0, **expected}
    assert logs["gate_mean/p/expert_0"] == pytest.approx(1.55 / 3, rel=1e-6)


def test_callback_bad_arguments():
    with pytest.raises(ValueError, match="every must be a positive integer"):
        SharingDiagnostics(every=0)
    with pytest.raises(ValueError, match="batches must be a positive integer"):
        SharingDiagnostics(batches=True)


def _events(folder):
    """`{tag: [(step, value)]}` from the event files in `folder`."""
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(
                    (event.step, tf.make_ndarray(value.tensor)))
    return found


def test_callback_in_fit_before_tensorboard(gated, tmp_path):
    model, data = gated
    history = model.fit(data, epochs=2, verbose=0, shuffle=False, callbacks=[
        SharingDiagnostics(data),
        keras.callbacks.TensorBoard(str(tmp_path))])
    # The test layer's gates depend only on the fixed preprocessing.
    assert history.history["gate_mean/p/expert_0"] == pytest.approx(
        [0.525, 0.525], rel=1e-6)
    assert history.history["gate_mean/q/expert_0"] == pytest.approx(
        [0.475, 0.475], rel=1e-6)
    written = _events(os.path.join(tmp_path, "train"))
    steps = written["epoch_gate_mean/p/expert_1"]
    assert [step for step, _ in steps] == [0, 1]
    assert [float(value) for _, value in steps] == pytest.approx([0.475] * 2,
                                                                 rel=1e-6)


def test_callback_writes_scalars_and_images_to_log_dir(mixing, tmp_path):
    model, data = mixing
    history = model.fit(data, epochs=2, verbose=0, shuffle=False,
                        callbacks=[SharingDiagnostics(log_dir=str(tmp_path))])
    assert not any(key.startswith("alpha/") for key in history.history)
    written = _events(os.path.join(tmp_path, "diagnostics"))
    alpha = model.get_layer("mixing").alpha  # trained: no longer the initial value
    assert float(alpha[0, 1]) != pytest.approx(0.1)
    assert [step for step, _ in written["alpha/p/q"]] == [0, 1]
    assert float(written["alpha/p/q"][-1][1]) == pytest.approx(float(alpha[0, 1]),
                                                               rel=1e-6)
    # The image: [width, height, PNG] of the 2 x 2 heatmap, 4.3 x 2.5 in at 100 dpi.
    [(step, image)] = written["alpha"][-1:]
    width, height, png = image
    assert (step, int(width), int(height)) == (1, 430, 250)
    assert tuple(tf.io.decode_png(png).shape) == (250, 430, 4)


# --- plotting ------------------------------------------------------------------


def test_plot_heatmap_png_and_annotations(tmp_path):
    figure = plot_heatmap([[0.25, 0.75, 0.5], [1.0, np.nan, 0.6]], ["p", "q"],
                          ["expert_0", "expert_1", "expert_2"], title="gates")
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.texts] == ["0.25", "0.75", "0.50", "1.00",
                                                "0.60"]  # NaN cell left blank
    # Lowest value on viridis's dark end -> white text; highest -> black text.
    assert ax.texts[0].get_color() == "white" and ax.texts[3].get_color() == "black"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["p", "q"]
    assert [t.get_text() for t in ax.get_xticklabels()] == EXPERTS + ["expert_2"]
    assert ax.get_title() == "gates"
    path = tmp_path / "heatmap.png"
    figure.savefig(path)
    # 3 columns, 2 rows: (max(3.5, 0.9 * 3 + 2.5), max(2.5, 0.5 * 2 + 1.5)) in.
    assert matplotlib.image.imread(path).shape == (250, 520, 4)


def test_plot_heatmap_options_dataframe_and_given_axes():
    frame = pd.DataFrame([[0.1, -0.4]], index=["income"], columns=["x", "y"])
    figure = Figure()
    ax = figure.add_subplot()
    assert plot_heatmap(frame, ax=ax, value_format=".0%", vmin=-1, vmax=1,
                        cmap="coolwarm") is figure
    assert [t.get_text() for t in ax.texts] == ["10%", "-40%"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert ax.images[0].get_clim() == (-1, 1)
    assert ax.images[0].get_cmap().name == "coolwarm"
    plot_heatmap([[2.0]], ["r"], ["c"], value_format=lambda v: f"{v:g}!")


def test_plot_heatmap_errors():
    with pytest.raises(ValueError, match="must be 2-D"):
        plot_heatmap([1.0, 2.0])
    with pytest.raises(ValueError, match=r"row_labels must have one label per "
                                         r"matrix row \(2\)"):
        plot_heatmap(np.zeros((2, 2)), ["only"], ["a", "b"])


def test_plot_sharing_saves_one_png_per_matrix(gated, tmp_path):
    model, data = gated
    frames = diagnostics.sharing(model, data)
    frames["per level/0"] = frames["gate_mean"].T
    figures = diagnostics.plot_sharing(frames, str(tmp_path / "plots"),
                                   value_format=".3f")
    assert list(figures) == ["gate_mean", "per level/0"]
    assert sorted(os.listdir(tmp_path / "plots")) == ["gate_mean.png",
                                                      "per_level_0.png"]
    texts = [t.get_text() for t in figures["gate_mean"].axes[0].texts]
    assert texts == ["0.525", "0.475", "0.475", "0.525"]
    image = matplotlib.image.imread(tmp_path / "plots" / "per_level_0.png")
    assert image.shape == (250, 430, 4)
    # A layer's raw output plots the same.
    layer = diagnostics.architecture_layer(model)
    raw = layer.diagnostics(tf.constant([[0.0, math.log(3.0), 0, 0]]))
    figure = diagnostics.plot_sharing(raw)["gate_mean"]
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["0.25", "0.75", "0.75", "0.25"]


# --- a real MMoE ---------------------------------------------------------------


def test_mmoe_expert_utilisation_is_the_mean_gate_weight():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    frame["p"], frame["q"] = frame["a"] + frame["b"], frame["a"] - frame["b"]
    features = [Feature(n, "numeric").fit(frame) for n in "ab"]
    tasks = [kmtl.Task(n, "regression", target=n) for n in "pq"]
    for task in tasks:
        task.fit(frame)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, tasks, "mmoe", num_experts=3,
                             expert_units=(4,), tower_units=())
    data = make_dataset(frame, features, tasks, batch_size=16)  # 16 + 16 + 8 rows

    utilisation = diagnostics.sharing(model, data, batches=3)["expert_utilisation"]
    assert list(utilisation.index) == ["p", "q"]
    assert list(utilisation.columns) == ["expert_0", "expert_1", "expert_2"]
    np.testing.assert_allclose(utilisation.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    # Reference: the gate weights of all 40 rows at once, averaged over rows.
    layer = model.get_layer("mmoe")
    encoded = keras.Model(model.input, layer.input)(
        {n: frame[n].to_numpy("float32") for n in "ab"})
    gates = keras.ops.convert_to_numpy(layer.gate_weights(encoded))
    assert gates.shape == (2, 40, 3)
    np.testing.assert_allclose(utilisation.to_numpy(), gates.mean(axis=1), rtol=1e-5)
    assert not np.allclose(gates.mean(axis=1), 1 / 3, atol=1e-3)  # not a trivial 1/3
    with pytest.raises(ValueError, match="'mmoe' depend on its inputs"):
        diagnostics.sharing(model)
