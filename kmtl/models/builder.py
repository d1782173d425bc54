"""`build_model`: features + tasks + an architecture name -> a `MultiTaskModel`."""

import keras

from kmtl import architectures
from kmtl import tasks as tasks_module
from kmtl._checks import check_rate
from kmtl._checks import check_units
from kmtl.errors import ConfigError
from kmtl.features import check_input_names
from kmtl.models.feature_encoder import encode_features
from kmtl.models.feature_encoder import encode_inputs
from kmtl.models.feature_encoder import encoder_inputs
from kmtl.models.feature_encoder import feature_inputs
from kmtl.models.multitask_model import MultiTaskModel
from kmtl.tasks.derived import build_product


def _check(check, *args):
    try:
        return check(*args)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def build_model(features, tasks, architecture="shared_bottom", tower_units=(64,),
                tower_activation="relu", tower_dropout=0.0,
                categorical_encoding="embedding", embedding_dim=None,
                numeric_encoding="plain", name=None, encoders=None,
                input_shapes=None, **options):
    """Builds a multi-task model with the Functional API.

    The graph: raw feature inputs -> preprocessing (see
    `kmtl.models.feature_encoder`), concatenated with the flattened outputs of
    any `encoders` -> the architecture layer (shared bottom, MMoE, ...; one
    representation per task) -> one tower MLP per task -> one head per task
    (`task.build_head`: `Dense(task.units)` with the task's output activation;
    regression heads rescale to label units with a `Rescaling` layer). A derived
    task
    (`Task(derived_from=[...])`, ESMM's CTCVR) has no tower or head: its output
    is a `Multiply` of the probabilities of the tasks it derives from, and the
    architecture serves only the other tasks.

    Args:
        features: list of fitted `kmtl.features.Feature`; may be empty when
            `encoders` are given.
        tasks: list of fitted `kmtl.Task` (or config dicts).
        architecture: registered name (`kmtl.architectures.list_architectures()`),
            class or layer instance. Default `"shared_bottom"`. It is built for
            the tasks that are not derived.
        tower_units: list of int, default `(64,)`. Hidden units of each task
            tower; `()` for none.
        tower_activation: str, default `"relu"`.
        tower_dropout: float in [0, 1), default 0.
        categorical_encoding: `"embedding"` (default) or `"one_hot"`.
        embedding_dim: int or None (per-feature rule of thumb).
        numeric_encoding: `"plain"` (default: the normalized value),
            `"piecewise_linear"` (quantile bins) or `"periodic"`
            (`kmtl.features.NUMERIC_ENCODINGS`; Gorishniy et al., NeurIPS
            2022), for numeric features without their own `encoding`.
        name: model name, default `"<architecture>_model"`.
        encoders: dict `{input_name: keras.Model or keras.layers.Layer}` or None.
            Each becomes a float32 model input `input_name` of the encoder's
            input shape (an image, a sequence); the encoder's output is
            flattened and concatenated with the tabular encoding. Its weights
            are shared by all tasks and trained unless the user froze them
            (`encoder.trainable = False`).
        input_shapes: dict `{input_name: shape}` without the batch axis, for
            encoders whose input shape is unknown (a bare layer, a model built
            without `keras.Input`).
        **options: the architecture's own arguments, e.g. `num_experts=8`.

    Returns:
        A `kmtl.MultiTaskModel` taking a dict of raw inputs (`(batch, 1)` per
        feature, keyed by `feature.input_name`: the column name unless that is
        not a valid input name, see `kmtl.features.input_name`; `(batch,
        *shape)` per encoder input) and returning `{task: (batch,
        task.units)}`; `model.features` are the fitted `features`, with their
        column names.

    Raises:
        ConfigError: unknown architecture or option, bad tower sizes, duplicate
            task names or a name shared by a task, a feature and an encoder
            input, two feature columns with the same input name, bad
            `derived_from` (unknown or non-binary task, a cycle), no feature
            and no encoder, an encoder whose input shape is unknown, or an
            input named like a layer of the model (`island_lookup` beside
            the categorical `island`).

    Examples:
        >>> cnn = keras.Sequential([keras.Input((8, 8, 1)),
        ...                         keras.layers.Conv2D(8, 3, activation="relu"),
        ...                         keras.layers.GlobalAveragePooling2D()], name="cnn")
        >>> model = kmtl.build_model([], [kmtl.Task("digit", "multiclass",
        ...                                         classes=list(range(10)))],
        ...                          encoders={"image": cnn}, units=(16,))
        >>> model.input["image"].shape
        (None, 8, 8, 1)
    """
    tasks = [tasks_module.get(t) for t in tasks]
    names = [t.name for t in tasks]
    if not tasks or len(set(names)) != len(names):
        raise ConfigError(f"Tasks must be a non-empty list with distinct names. "
                          f"Received: {names}")
    encoders = dict(encoders or {})
    check_input_names(features)
    input_names = [f.input_name for f in features] + list(encoders)
    clash = set(names) & set(input_names)
    if clash:
        raise ConfigError(f"Task name(s) {sorted(clash)} are also input names "
                          f"(features or encoders); rename the task(s).")
    if len(set(input_names)) != len(input_names):
        raise ConfigError(f"Encoder input names must differ from the feature names "
                          f"(their model input names). Received: features "
                          f"{[f.input_name for f in features]}, "
                          f"encoders {sorted(encoders)}.")
    if not input_names:
        raise ConfigError("A model needs at least one feature or one encoder.")
    ordered = tasks_module.derivation_order(tasks)
    tower_units = _check(check_units, tower_units, "tower_units", True)
    tower_dropout = _check(check_rate, tower_dropout, "tower_dropout")
    label = architecture if isinstance(architecture, str) else "custom"

    # === Inputs and preprocessing ===
    inputs = feature_inputs(features)
    inputs.update(encoder_inputs(encoders, input_shapes))
    _, tabular = encode_features(features, inputs,
                                 categorical_encoding=categorical_encoding,
                                 embedding_dim=embedding_dim,
                                 numeric_encoding=numeric_encoding)
    parts = [] if tabular is None else [tabular]
    parts.extend(encode_inputs(encoders, inputs))
    encoded = (parts[0] if len(parts) == 1
               else keras.layers.Concatenate(name="encoded_inputs")(parts))

    # === Shared part ===
    headed = [t for t in ordered if not t.derived_from]
    layer = architectures.get(architecture, task_names=[t.name for t in headed],
                              **options)
    representations = layer(encoded)

    # === Towers and heads ===
    outputs = {}
    for task in headed:
        outputs[task.name] = _tower_and_head(
            task, representations[task.name], tower_units, tower_activation,
            tower_dropout)

    # === Derived tasks ===
    for task in ordered:
        if task.derived_from:
            outputs[task.name] = build_product(task, outputs)
    try:
        return MultiTaskModel(inputs=inputs,
                              outputs={t.name: outputs[t.name] for t in tasks},
                              tasks=tasks, features=features,
                              name=name or f"{label}_model")
    except ValueError as error:
        if "should be unique" not in str(error):
            raise
        # An input named like a layer kmtl builds (`island_lookup`,
        # `numeric_features`, a tower).
        raise ConfigError(
            f"{error} An input name equals the name of a layer of the model. "
            f"Input names: {input_names}. Rename the column or encoder input."
        ) from None


def _tower_and_head(task, x, tower_units, tower_activation, tower_dropout):
    """One task's tower MLP on its representation `x`, then its head
    (`Task.build_head`)."""
    for i, units in enumerate(tower_units):
        x = keras.layers.Dense(units, activation=tower_activation,
                               name=f"{task.name}_tower_{i}")(x)
        if tower_dropout:
            x = keras.layers.Dropout(tower_dropout,
                                     name=f"{task.name}_tower_dropout_{i}")(x)
    return task.build_head(x)
