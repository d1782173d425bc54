"""`MultiTaskModel`: a Functional Keras model with one output per task and a
training step that computes, weights and logs per-task losses."""

import warnings

import keras
import tensorflow as tf
from keras import ops
from keras.utils import unpack_x_y_sample_weight

from kmtl import tasks as tasks_module
from kmtl import weighting as weighting_module
from kmtl._keras_internals import SerializableDict
from kmtl._keras_internals import scale_loss_for_distribution
from kmtl._keras_internals import unscale_loss_for_distribution
from kmtl.architectures.base import Architecture
from kmtl.errors import ConfigError
from kmtl.features import Feature
from kmtl.models import shared_parameters
from kmtl.weighting import StaticWeighting

LOSS_COMBINATIONS = ("sum", "mean")
GRADIENT_MODES = ("parameters", "representation")
_FEATURE_KINDS = {
    "float32": ("numeric", "float32"),
    "string": ("categorical", "string"),
    "int64": ("categorical", "int64"),
}


@keras.saving.register_keras_serializable(package="kmtl")
class MultiTaskModel(keras.Model):
    """A multi-task Keras model: dict inputs keyed by feature, dict outputs keyed
    by task, and a train step that owns the task losses.

    Build one with `kmtl.build_model`; construct it directly like a Functional
    model (`MultiTaskModel(inputs, outputs, tasks=tasks)`) to wire your own graph.
    Each task's loss is the mean over the rows labelled for it
    (`reduction="mean_with_sample_weight"`, sample weight 0 = missing label), so a
    batch in which a task has no labels adds exactly 0 for that task. The total
    loss combines the task losses with static loss weights:
    `sum_t w_t L_t` (`loss_combination="sum"`) or
    `sum_t w_t L_t / sum_t w_t` (`"mean"`), plus any regularization losses.

    Args:
        inputs: dict of `keras.Input`, keyed by feature name.
        outputs: dict of tensors keyed by task name.
        name: str, the model name.
        tasks: list of `kmtl.Task` (or their config dicts), one per output.
        features: list of fitted `kmtl.features.Feature` (or their configs), the
            raw tabular inputs with their training statistics, as `build_model`
            passes them; saved with the model. None (a graph wired by hand, a
            model saved without them): `model.features` describes the inputs
            by name, kind and dtype only.
        **kwargs: passed to `keras.Model` (`name`, ...).

    Logs (and so TensorBoard): `loss`, `<task>_loss` and `<task>_<metric>` for each
    task metric, e.g. `income_loss`, `income_auc`; and `sharing_penalty` when a
    layer has a `penalty()` method (soft parameter sharing): the summed
    penalties, the part of `loss` they add.

    Raises:
        ConfigError: the output keys differ from the task names.
    """

    def __init__(self, inputs, outputs, name=None, *, tasks, features=None,
                 **kwargs):
        # `tasks` and `features` are keyword-only so the positional signature
        # stays Functional's (inputs, outputs, name): Keras then saves and
        # revives the graph itself, passing them back from `get_config`.
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.tasks = [tasks_module.get(t) for t in tasks]
        self._fitted_features = None if features is None else [
            f if isinstance(f, Feature) else Feature.from_config(dict(f))
            for f in features]
        names = [t.name for t in self.tasks]
        if sorted(names) != sorted(self.output_names):
            raise ConfigError(
                f"The model's outputs {sorted(self.output_names)} must be the task "
                f"names {sorted(names)}, one output per task."
            )
        self._task_losses = {t.name: t.build_loss() for t in self.tasks}
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{t.name}_loss")
                                   for t in self.tasks]
        self.task_weight_trackers = [keras.metrics.Mean(name=f"{t.name}_weight")
                                     for t in self.tasks]
        self.sharing_penalty_tracker = (
            keras.metrics.Mean(name="sharing_penalty")
            if self._penalty_layers() else None)
        self.task_metrics = []
        self._metric_slices = {}
        for task in self.tasks:
            start = len(self.task_metrics)
            self.task_metrics.extend(task.build_metrics())
            self._metric_slices[task.name] = (start, len(self.task_metrics))
        self.loss_weights = {t.name: t.loss_weight for t in self.tasks}
        self.loss_combination = "sum"
        self.weighting = None

    # === Data description ===

    @property
    def task_names(self):
        return [t.name for t in self.tasks]

    @property
    def architecture(self):
        """The model's `kmtl.architectures.Architecture` layer (the one that
        `build_model` put on the encoded inputs), or None for a graph wired by
        hand without one.

        Raises:
            ConfigError: the model holds several architecture layers.
        """
        found = [layer for layer in self.layers if isinstance(layer, Architecture)]
        if len(found) > 1:
            raise ConfigError(
                f"Model {self.name!r} holds several architecture layers "
                f"{[layer.name for layer in found]}; kmtl expects one.")
        return found[0] if found else None

    @property
    def features(self):
        """The raw tabular inputs as `kmtl.features.Feature`s; encoder inputs
        (images, ...) are not features.

        The fitted features given to the constructor (with their training
        statistics), else ones derived from the inputs: name, kind and dtype.
        """
        if self._fitted_features is not None:
            return list(self._fitted_features)
        features = []
        for name, tensor in self._inputs_struct.items():
            if tuple(tensor.shape[1:]) != (1,):
                continue  # an encoder input (an image, ...), not a raw feature
            kind, dtype = _FEATURE_KINDS[keras.backend.standardize_dtype(tensor.dtype)]
            features.append(Feature(name, kind, dtype))
        return features

    # === Training ===

    def compile(self, optimizer="adam", loss_weights=None, loss_combination="sum",
                weighting=None, gradients="parameters", **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or identifier.
            loss_weights: dict `{task: weight}` overriding the tasks' loss weights.
            loss_combination: `"sum"` (weighted sum) or `"mean"` (weighted mean)
                of the static weights; used when `weighting` is None.
            weighting: a `kmtl.weighting` method: name, spec string
                (`"static(mean=True)"`), config dict or instance. Default: static
                loss weights combined by `loss_combination`.
            gradients: `"parameters"` (default) or `"representation"`: what a
                gradient-based weighting's task gradients are taken with respect
                to. `"representation"` uses the shared representation (the
                architecture's output, which must be one tensor for every task, as
                in `shared_bottom`): one cheap backward pass per task through the
                towers, then one through the shared layers with the aggregated
                direction (Sener and Koltun's MGDA-UB).
            **kwargs: `run_eagerly`, `steps_per_execution`, `jit_compile`,
                `auto_scale_loss`, as in `keras.Model.compile`. Losses and metrics
                belong to the tasks, so `loss` and `metrics` are not accepted.

        Raises:
            ConfigError: unknown task in `loss_weights`, a negative weight, an
                unknown `loss_combination`, or `loss`/`metrics` given.
        """
        for key in ("loss", "metrics", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ConfigError(
                    f"MultiTaskModel.compile does not take `{key}`: each kmtl.Task "
                    f"carries its own loss and metrics."
                )
            kwargs.pop(key, None)
        if loss_combination not in LOSS_COMBINATIONS:
            raise ConfigError(
                f"Unknown loss_combination {loss_combination!r}. Use one of "
                f"{LOSS_COMBINATIONS}."
            )
        weights = {t.name: t.loss_weight for t in self.tasks}
        for name, value in (loss_weights or {}).items():
            if name not in weights:
                raise ConfigError(f"loss_weights: unknown task {name!r}. Tasks are "
                                  f"{self.task_names}.")
            if not float(value) >= 0:
                raise ConfigError(f"loss_weights[{name!r}] must be >= 0. Received: "
                                  f"{value!r}")
            weights[name] = float(value)
        if sum(weights.values()) <= 0:
            raise ConfigError("At least one loss weight must be positive.")
        if gradients not in GRADIENT_MODES:
            raise ConfigError(f"Unknown gradients={gradients!r}. Use one of "
                              f"{GRADIENT_MODES}.")
        if weighting is None:
            weighting = StaticWeighting(mean=loss_combination == "mean")
        weighting = weighting_module.get(weighting)
        super().compile(optimizer=optimizer, **kwargs)
        self.loss_weights = weights
        self.loss_combination = loss_combination
        weighting.build_tasks(self.task_names, weights)
        self.weighting = weighting
        self.gradient_mode = gradients
        if gradients == "representation" and weighting.gradient_based:
            # Not tracked (object.__setattr__): it shares every layer with `self`.
            object.__setattr__(self, "_representation_model",
                               self._build_representation_model())
        self._compile_config = SerializableDict(
            optimizer=optimizer, loss_weights=loss_weights,
            loss_combination=loss_combination,
            weighting=weighting_module.serialize(weighting), gradients=gradients,
            **kwargs)

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, plus the callbacks the weighting method needs.

        The method's callbacks run first, so its state is up to date when a
        user's callback (e.g. `ModelCheckpoint`) saves the model."""
        extra = self.weighting.callbacks() if self.weighting is not None else []
        return super().fit(*args, callbacks=extra + list(callbacks or []), **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under tf.distribute, Keras averages a data batch across replicas to
        # build the model symbolically, which fails on string features (strings
        # cannot be averaged). A MultiTaskModel is a built Functional model with
        # no compiled loss or metrics, so only the optimizer needs building.
        if self._distribute_strategy is None:
            return
        with self.distribute_strategy.scope():
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    def compute_task_losses(self, y, y_pred, sample_weight=None):
        """Per-task losses `{task: scalar}`, each the mean over labelled rows.

        Regression labels and predictions are standardized with the task's
        training mean and std first (see `Task.standardize`). Each value is
        already scaled for `tf.distribute` (divided by the number of replicas).
        """
        losses = {}
        for task in self.tasks:
            name = task.name
            weight = None if sample_weight is None else sample_weight.get(name)
            losses[name] = self._task_losses[name](
                task.standardize(y[name]), task.standardize(y_pred[name]),
                sample_weight=weight)
        return losses

    def stack_task_losses(self, task_losses):
        """Per-task losses `{task: scalar}` -> a `(tasks,)` float32 tensor in
        `task_names` order."""
        return ops.stack([ops.convert_to_tensor(task_losses[n], "float32")
                          for n in self.task_names])

    def labelled_tasks(self, sample_weight):
        """`(tasks,)` bool, in `task_names` order: does the batch hold a
        labelled row (a positive sample weight) for each task?

        Args:
            sample_weight: dict `{task: (batch,)}` or None (all labelled); a
                task missing from the dict counts as labelled.
        """
        flags = []
        for name in self.task_names:
            weight = None if sample_weight is None else sample_weight.get(name)
            flags.append(ops.convert_to_tensor(True) if weight is None
                         else ops.sum(weight) > 0)
        return ops.stack(flags)

    def combine_task_losses(self, task_losses, labelled=None):
        """The total loss from per-task losses `{task: scalar}`, by the weighting
        method (static loss weights unless `compile(weighting=...)` says
        otherwise)."""
        losses = self.stack_task_losses(task_losses)
        if labelled is None:
            labelled = ops.ones((len(self.tasks),), dtype="bool")
        total, _ = self.weighting.combine_losses(losses, labelled)
        return total

    def _regularization(self):
        if not self.losses:
            return 0.0
        return scale_loss_for_distribution(ops.sum(self.losses))

    def _penalty_layers(self):
        return [layer for layer in self._flatten_layers(include_self=False)
                if callable(getattr(layer, "penalty", None))]

    def _sharing_penalty(self):
        """The summed `penalty()` of the soft-sharing layers, which their
        `add_loss` puts into `self.losses`; None without such layers."""
        if self.sharing_penalty_tracker is None:
            return None
        return ops.sum(ops.stack([ops.cast(layer.penalty(), "float32")
                                  for layer in self._penalty_layers()]))

    def _update_metrics(self, loss, task_losses, x, y, y_pred, sample_weight,
                        task_weights=None, penalty=None):
        batch_size = ops.shape(next(iter(x.values())))[0]
        self._loss_tracker.update_state(
            unscale_loss_for_distribution(loss), sample_weight=batch_size)
        if penalty is not None:
            self.sharing_penalty_tracker.update_state(penalty)
        if task_weights is not None:
            for i, tracker in enumerate(self.task_weight_trackers):
                tracker.update_state(task_weights[i])
        for task, tracker in zip(self.tasks, self.task_loss_trackers):
            weight = None if sample_weight is None else sample_weight.get(task.name)
            tracker.update_state(
                unscale_loss_for_distribution(task_losses[task.name]),
                sample_weight=batch_size if weight is None else ops.sum(weight))
            start, end = self._metric_slices[task.name]
            for metric in self.task_metrics[start:end]:
                metric.update_state(y[task.name], y_pred[task.name],
                                    sample_weight=weight)
        return self.get_metrics_result()

    def _build_representation_model(self):
        """`inputs -> (outputs, shared representation)` over the same layers."""
        # The architecture layer serves every task with a head of its own (a task
        # derived from others has none).
        headed = [t.name for t in self.tasks if not t.derived_from]
        for layer in self.layers:
            # The architecture layer: it takes `task_names` and returns one
            # representation per task (Keras keeps its outputs flattened).
            if list(getattr(layer, "task_names", None) or []) != headed:
                continue
            if not getattr(layer, "shares_representation", False):
                raise ConfigError(
                    f"gradients='representation' needs one representation "
                    f"shared by every task, but the architecture layer "
                    f"'{layer.name}' gives each task its own. Use "
                    f"architecture='shared_bottom' or gradients='parameters'.")
            outputs = layer.output
            first = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
            return keras.Model(self._inputs_struct, [self._outputs_struct, first])
        raise ConfigError("gradients='representation': no architecture layer with "
                          "one output per task was found in the model.")

    def train_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        weighting = self.weighting
        trainable = self.trainable_weights
        representation = None
        with tf.GradientTape(persistent=weighting.gradient_based) as tape:
            if weighting.gradient_based and self.gradient_mode == "representation":
                y_pred, representation = self._representation_model(
                    x, training=True)
            else:
                y_pred = self(x, training=True)
            task_losses = self.compute_task_losses(y, y_pred, sample_weight)
            losses = self.stack_task_losses(task_losses)
            labelled = self.labelled_tasks(sample_weight)
            if weighting.gradient_based:
                regularization = self._regularization()
                # Each task's own loss tensor, not a slice of `losses`: the
                # gradient of a slice of a stack would carry zeros back through
                # every other task's tower.
                scaled = [self.optimizer.scale_loss(task_losses[name])
                          for name in self.task_names]
                scaled_regularization = self.optimizer.scale_loss(regularization)
                scaled_sum = ops.sum(ops.stack(scaled))
            else:
                total, task_weights = weighting.combine_losses(losses, labelled)
                loss = total + self._regularization()
                scaled_loss = self.optimizer.scale_loss(loss)
        if representation is not None:
            gradients, task_weights = self._representation_gradients(
                tape, scaled, scaled_sum, scaled_regularization, losses, labelled,
                trainable, representation)
            loss = ops.sum(task_weights * losses) + regularization
            del tape
        elif weighting.gradient_based:
            gradients, task_weights = self._aggregated_gradients(
                tape, scaled, scaled_regularization, losses, labelled, trainable)
            loss = ops.sum(task_weights * losses) + regularization
            del tape
        else:
            gradients = tape.gradient(scaled_loss, trainable)
        # Before the update: the penalty `loss` holds.
        penalty = self._sharing_penalty()
        self.optimizer.apply_gradients(zip(gradients, trainable))
        return self._update_metrics(loss, task_losses, x, y, y_pred, sample_weight,
                                    task_weights, penalty)

    def _aggregated_gradients(self, tape, scaled_losses, scaled_regularization,
                              losses, labelled, variables):
        """Per-task gradients -> the weighting's direction for shared parameters.

        A parameter that only one task's loss reaches (its tower and head, its
        gate or its slice of a stacked tower) gets that task's gradient; one
        that several reach (encoder, shared experts) is shared: the tasks'
        gradients of it, unscaled (mixed precision) and flattened into a
        `(tasks, parameters)` matrix, go to `Weighting.aggregate_gradients`,
        whose direction is split back into the variables. Which parameters are
        shared is decided when the step is traced
        (`kmtl.models.shared_parameters`).
        """
        per_task = [tape.gradient(loss, variables) for loss in scaled_losses]
        parts = self.gradient_parts(per_task, variables)
        scale = self.optimizer.scale_loss(ops.convert_to_tensor(1.0, "float32"))
        directions = {}
        if any(part.shared for part in parts):
            matrix = shared_parameters.gradient_matrix(
                per_task, parts, variables) / scale
            direction, task_weights = self.weighting.aggregate_gradients(
                matrix, losses, labelled)
            directions = shared_parameters.split_direction(
                direction * scale, parts, variables)
        else:
            # Read when the step is traced, so said once per trace.
            warnings.warn(
                f"Model {self.name!r}: the tasks share no trained parameter, so "
                f"the gradient-based weighting {type(self.weighting).__name__} has "
                f"nothing to combine; each task's parameters get its own "
                f"gradient, as with equal weights.", stacklevel=2)
            task_weights = ops.cast(labelled, "float32")
        gradients = shared_parameters.assemble(
            parts, variables,
            lambda part: directions.get(part) if part.shared
            else shared_parameters.own_gradient(per_task, part))
        gradients = self._add_regularization_gradients(
            tape, scaled_regularization, variables, gradients)
        return gradients, task_weights

    def _representation_gradients(self, tape, scaled_losses, scaled_sum,
                                  scaled_regularization, losses, labelled,
                                  variables, representation):
        """MGDA-UB style: aggregate the task gradients of the shared
        representation `z` `(batch, d)`, then one backward pass of the direction
        through the layers below `z`. Layers above `z` (towers, heads) get their
        own task's gradient."""
        scale = self.optimizer.scale_loss(ops.convert_to_tensor(1.0, "float32"))
        rows = [ops.reshape(ops.cast(tape.gradient(loss, representation), "float32"),
                            (-1,)) for loss in scaled_losses]
        direction, task_weights = self.weighting.aggregate_gradients(
            ops.stack(rows) / scale, losses, labelled)
        direction = ops.cast(ops.reshape(direction * scale, ops.shape(representation)),
                             representation.dtype)
        gradients = tape.gradient(representation, variables,
                                  output_gradients=direction)
        above = [i for i, g in enumerate(gradients) if g is None]
        own = tape.gradient(scaled_sum, [variables[i] for i in above])
        for i, g in zip(above, own):
            gradients[i] = g
        gradients = self._add_regularization_gradients(
            tape, scaled_regularization, variables, gradients)
        return gradients, task_weights

    def _add_regularization_gradients(self, tape, scaled_regularization, variables,
                                      gradients):
        """Adds the gradients of the regularization losses (if any)."""
        if not self.losses:
            return gradients
        extra = tape.gradient(scaled_regularization, variables)
        return [g if e is None else (e if g is None else g + e)
                for g, e in zip(gradients, extra)]

    def task_gradients(self, data):
        """Each task's gradient of the shared parameters on one batch.

        Args:
            data: a batch `(features, labels, sample_weights)`, as `make_dataset`
                yields.

        Returns:
            `(gradients, labelled)`: `(tasks, parameters)` float32, row `t` the
            gradient of task `t`'s loss with respect to every parameter that more
            than one task's loss reaches (not the task-owned slices of stacked
            per-task weights, such as MMoE's gates; see
            `kmtl.models.shared_parameters`), flattened; and `(tasks,)` bool. Used by
            `kmtl.callbacks.GradientStatistics`; the train step computes the same
            matrix for gradient-based weightings.
        """
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        variables = self.trainable_weights
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self(x, training=False)
            task_losses = self.compute_task_losses(y, y_pred, sample_weight)
        per_task = [tape.gradient(task_losses[n], variables) for n in self.task_names]
        del tape
        parts = self.gradient_parts(per_task, variables)
        return (shared_parameters.gradient_matrix(per_task, parts, variables),
                self.labelled_tasks(sample_weight))

    def gradient_parts(self, per_task, variables):
        """The variables cut into shared and task-owned parts.

        Args:
            per_task: list over tasks (in `task_names` order) of each task's
                gradients of `variables` (None where its loss does not reach).
            variables: the list of variables differentiated.

        Returns:
            The list of `kmtl.models.shared_parameters` parts (see there).
        """
        return shared_parameters.gradient_parts(
            per_task, variables, self.tasks, shared_parameters.owner_reach(self))

    # Old private names, used by kmtl.measures until it moves to the public ones.
    _gradient_parts = gradient_parts
    _stack_losses = stack_task_losses
    _labelled = labelled_tasks

    def test_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        task_losses = self.compute_task_losses(y, y_pred, sample_weight)
        total, task_weights = self.weighting.combine_losses(
            self.stack_task_losses(task_losses), self.labelled_tasks(sample_weight))
        loss = total + self._regularization()
        return self._update_metrics(loss, task_losses, x, y, y_pred, sample_weight,
                                    task_weights, self._sharing_penalty())

    # === Config ===

    def get_compile_config(self):
        if not self.compiled:
            return None
        return self._compile_config.serialize()

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = {**super().get_config(),
                  "tasks": [t.get_config() for t in self.tasks]}
        if self._fitted_features is not None:
            config["features"] = [f.get_config() for f in self._fitted_features]
        return config

