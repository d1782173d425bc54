"""`build_model`: features + tasks + an architecture name -> a `MultiTaskModel`."""

import keras

from kmtl import architectures
from kmtl import tasks as tasks_module
from kmtl.architectures._checks import check_rate
from kmtl.architectures._checks import check_units
from kmtl.errors import ConfigError
from kmtl.models.feature_encoder import encode_features
from kmtl.models.feature_encoder import feature_inputs
from kmtl.models.multitask_model import MultiTaskModel


def _check(check, *args):
    try:
        return check(*args)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def build_model(features, tasks, architecture="shared_bottom", tower_units=(64,),
                tower_activation="relu", tower_dropout=0.0,
                categorical_encoding="embedding", embedding_dim=None, name=None,
                **options):
    """Builds a multi-task model with the Functional API.

    The graph: raw feature inputs -> preprocessing (see
    `kmtl.models.feature_encoder`) -> the architecture layer (shared bottom,
    MMoE, ...; one representation per task) -> one tower MLP per task -> one head
    per task (`Dense(task.units)` with the task's output activation; regression
    heads rescale to label units with a `Rescaling` layer).

    Args:
        features: list of fitted `kmtl.features.Feature`.
        tasks: list of fitted `kmtl.Task` (or config dicts).
        architecture: registered name (`kmtl.architectures.list_architectures()`),
            class or layer instance. Default `"shared_bottom"`.
        tower_units: list of int, default `(64,)`. Hidden units of each task
            tower; `()` for none.
        tower_activation: str, default `"relu"`.
        tower_dropout: float in [0, 1), default 0.
        categorical_encoding: `"embedding"` (default) or `"one_hot"`.
        embedding_dim: int or None (per-feature rule of thumb).
        name: model name, default `"<architecture>_model"`.
        **options: the architecture's own arguments, e.g. `num_experts=8`.

    Returns:
        A `kmtl.MultiTaskModel` taking a dict of `(batch, 1)` raw inputs keyed by
        feature name and returning `{task: (batch, task.units)}`.

    Raises:
        ConfigError: unknown architecture or option, bad tower sizes, a task name
            that is also a feature name, or duplicate task names.
    """
    tasks = [tasks_module.get(t) for t in tasks]
    names = [t.name for t in tasks]
    if not tasks or len(set(names)) != len(names):
        raise ConfigError(f"Tasks must be a non-empty list with distinct names. "
                          f"Received: {names}")
    clash = set(names) & {f.name for f in features}
    if clash:
        raise ConfigError(f"Task name(s) {sorted(clash)} are also feature names; "
                          f"rename the task(s).")
    tower_units = _check(check_units, tower_units, "tower_units", True)
    tower_dropout = _check(check_rate, tower_dropout, "tower_dropout")
    label = architecture if isinstance(architecture, str) else "custom"

    # === Inputs and preprocessing ===
    inputs = feature_inputs(features)
    encoded = encode_features(features, inputs, categorical_encoding, embedding_dim)

    # === Shared part ===
    layer = architectures.create(architecture, names, **options)
    representations = layer(encoded)

    # === Towers and heads ===
    outputs = {}
    for task in tasks:
        x = representations[task.name]
        for i, units in enumerate(tower_units):
            x = keras.layers.Dense(units, activation=tower_activation,
                                   name=f"{task.name}_tower_{i}")(x)
            if tower_dropout:
                x = keras.layers.Dropout(tower_dropout,
                                         name=f"{task.name}_tower_dropout_{i}")(x)
        if task.type == "regression":
            x = keras.layers.Dense(task.units, dtype="float32",
                                   name=f"{task.name}_head")(x)
            x = keras.layers.Rescaling(
                scale=task.target_std, offset=task.target_mean, dtype="float32",
                name=task.name)(x)
        else:
            x = keras.layers.Dense(task.units, activation=task.activation,
                                   dtype="float32", name=task.name)(x)
        outputs[task.name] = x
    return MultiTaskModel(inputs=inputs, outputs=outputs, tasks=tasks,
                          name=name or f"{label}_model")
