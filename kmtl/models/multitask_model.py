"""`MultiTaskModel`: a Functional Keras model with one output per task and a
training step that computes, weights and logs per-task losses."""


import keras
import numpy as np
import tensorflow as tf
from keras import ops
from keras.utils import unpack_x_y_sample_weight

from kmtl import tasks as tasks_module
from kmtl import weighting as weighting_module
from kmtl._keras_internals import SerializableDict
from kmtl._keras_internals import unscale_loss_for_distribution
from kmtl.architectures.base import Architecture
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.features.base import ENCODED_PREFIX
from kmtl.models import feature_encoder
from kmtl.models import shared_parameters
from kmtl.models import steps
from kmtl.models.schedule import TrainSchedule
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
    `sum_t w_t L_t / sum_t w_t` (`"mean"`), plus any regularization losses, or
    by the weighting method given to `compile` (a loss weighting, or a method
    that combines the task gradients; see `kmtl.models.steps`).

    Args:
        inputs: dict of `keras.Input`, keyed by input name
            (`Feature.input_name`).
        outputs: dict of tensors keyed by task name.
        name: str, the model name.
        tasks: list of `kmtl.Task` (or their config dicts), one per output.
        features: list of fitted `kmtl.features.Feature` (or their configs), the
            raw tabular inputs with their training statistics, as `build_model`
            passes them; saved with the model. None (a graph wired by hand, a
            model saved without them): `model.features` describes the inputs
            by name, kind and dtype only.
        **kwargs: passed to `keras.Model` (`name`, ...).

    Input shape:
        dict `{input_name: (batch, 1)}` of raw values (float32 for numeric
        features, string or int64 for categorical ones), plus `(batch,
        *shape)` per encoder input of `build_model`.

    Output shape:
        dict `{task_name: (batch, task.units)}`: probabilities for binary,
        multiclass and multilabel tasks, label units for regression tasks.

    Logs (and so TensorBoard): `loss`, `<task>_loss`, `<task>_weight` (the
    effective task weight) and `<task>_<metric>` for each task metric, e.g.
    `income_loss`, `income_auc`; and `sharing_penalty` when the architecture
    adds a penalty (soft parameter sharing): the part of `loss` it adds.

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
        keys = (set(self._inputs_struct) if isinstance(self._inputs_struct, dict)
                else set())
        for feature in self._fitted_features or []:
            if feature.input_name not in keys and feature.name in keys:
                # Saved before input names were sanitized: the input is
                # named after the column (`capital-gain`).
                feature.input_name = feature.name
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
            if self._penalty_layer() is not None else None)
        self.task_metrics = []
        self._metric_slices = {}
        for task in self.tasks:
            start = len(self.task_metrics)
            self.task_metrics.extend(task.build_metrics())
            self._metric_slices[task.name] = (start, len(self.task_metrics))
        self.loss_weights = {t.name: t.loss_weight for t in self.tasks}
        self.loss_combination = "sum"
        self.weighting = None
        # A curriculum's `TrainSchedule`, while a `fit` with one runs.
        self.schedule = None
        self._submodels = _Submodels()

    # === Data description ===

    @property
    def task_names(self):
        """The task names, in output order (list of str)."""
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
        A feature's `name` is its column name (what DataFrames and
        `make_dataset` use), its `input_name` the model input's key.
        """
        if self._fitted_features is not None:
            return list(self._fitted_features)
        features = []
        for name, tensor in self._inputs_struct.items():
            if tuple(tensor.shape[1:]) != (1,):
                continue  # an encoder input (an image, ...), not a raw feature
            kind, dtype = _FEATURE_KINDS[keras.backend.standardize_dtype(tensor.dtype)]
            feature = Feature(name, kind, dtype)
            feature.input_name = name
            features.append(feature)
        return features

    # === Raw and encoded inputs ===

    @property
    def encoded_inputs(self):
        """The inputs of the encoded path: `{Feature.encoded_key(): block}`
        for the feature kinds (the tensors the fitted preprocessing makes,
        see `kmtl.features.Feature.encode`), plus the encoder inputs (images,
        ...) as they are; None for a model without blocks (saved by kmtl 0.2,
        or wired by hand)."""
        if "encoded_inputs" not in self._submodels:
            features = self._fitted_features
            blocks = (None if features is None
                      else feature_encoder.find_blocks(self, features))
            if blocks is not None:
                raw = {f.input_name for f in features}
                blocks.update({name: tensor for name, tensor
                               in self._inputs_struct.items() if name not in raw})
            self._submodels["encoded_inputs"] = blocks
        return self._submodels["encoded_inputs"]

    def is_encoded(self, x):
        """Whether the batch `x` holds encoded blocks (`make_dataset`'s
        default) rather than raw feature values."""
        return isinstance(x, dict) and any(
            str(key).startswith(ENCODED_PREFIX) for key in x)

    def submodel(self, outputs, x):
        """A Functional model from the inputs that the batch `x` uses (raw or
        encoded) to `outputs` (tensors of this model's graph), over this
        model's own layers; cached per `(outputs, input kind)`.

        It is held outside Keras's tracking, so its layers are not the
        model's twice over (in `model.layers`, the saved file, the weights'
        paths).

        Raises:
            ConfigError: `x` is encoded and the model has no encoded path.
        """
        encoded = self.is_encoded(x)
        key = (id(outputs) if not isinstance(outputs, (list, tuple))
               else tuple(id(o) for o in outputs), encoded)
        if key not in self._submodels:
            self._submodels[key] = _functional(self._graph_inputs(encoded),
                                               outputs)
        return self._submodels[key]

    def _graph_inputs(self, encoded):
        if not encoded:
            return self._inputs_struct
        inputs = self.encoded_inputs
        if inputs is None:
            raise ConfigError(
                f"Model {self.name!r} takes raw feature values only (it has no "
                f"encoded blocks: saved by kmtl 0.2, or wired by hand). Build "
                f"its data with make_dataset(..., encoded=False).")
        return inputs

    # Plain Python, not converted by AutoGraph when a SavedModel signature is
    # traced (AutoGraph cannot convert a zero-argument `super()`).
    @tf.autograph.experimental.do_not_convert
    def __call__(self, inputs, *args, **kwargs):
        """`keras.Model.__call__` on raw values; a batch of encoded blocks
        (`make_dataset`'s default) runs the encoded path (`forward`)."""
        if self.is_encoded(inputs):
            return self.submodel(self._outputs_struct, inputs)(
                inputs, *args, **kwargs)
        if isinstance(inputs, dict):
            self._check_raw_dtypes(inputs)
        return super(MultiTaskModel, self).__call__(  # noqa: UP008
            inputs, *args, **kwargs)

    def _check_raw_dtypes(self, inputs):
        """Raises DataError for a raw input whose values are of another kind
        than the feature takes (numbers for a string categorical, text for a
        number), naming the input and the dtype it takes: Keras would fail
        deep in the graph, or map every value to out-of-vocabulary."""
        for feature in self._fitted_features or []:
            value = inputs.get(feature.input_name)
            kind = _value_kind(value)
            if kind is None:
                continue
            expected = "text" if feature.dtype == "string" else "number"
            if kind == expected:
                continue
            column = ("" if feature.name == feature.input_name
                      else f" (column {feature.name!r})")
            raise DataError(
                f"Input {feature.input_name!r}{column} is a {feature.kind} "
                f"feature of dtype {feature.dtype}, as in training, but received "
                f"{kind} values of dtype {_dtype_name(value)}. Send "
                + ("the categories as strings (a code such as 1 and the text "
                   "'1' are different categories)."
                   if feature.dtype == "string" else
                   f"{'integer codes' if feature.kind == 'categorical' else 'numbers'}"
                   f" (NaN where missing)."))

    def forward(self, x, training=False):
        """The model's outputs `{task: prediction}` on a batch of raw values
        or of encoded blocks (the encoded path: the same layers after the
        fitted preprocessing); `model(x, training=...)` does the same."""
        return self(x, training=training)

    def stateless_forward(self, trainable_variables, non_trainable_variables, x,
                          training=False):
        """`forward` with the given variable values (the model's
        `trainable_variables` and `non_trainable_variables`, in order),
        as `keras.Model.stateless_call`; returns the outputs only."""
        if not self.is_encoded(x):
            outputs, _ = self.stateless_call(
                trainable_variables, non_trainable_variables, x,
                training=training)
            return outputs
        submodel = self.submodel(self._outputs_struct, x)
        values = {id(v): value for v, value in zip(
            self.trainable_variables + self.non_trainable_variables,
            list(trainable_variables) + list(non_trainable_variables))}
        outputs, _ = submodel.stateless_call(
            [values[id(v)] for v in submodel.trainable_variables],
            [values[id(v)] for v in submodel.non_trainable_variables],
            x, training=training)
        return outputs

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
                The weighting and `gradients` choose the step strategy
                (`model.step_strategy`, see `kmtl.models.steps`).
            **kwargs: `run_eagerly`, `steps_per_execution`, `jit_compile`,
                `auto_scale_loss`, as in `keras.Model.compile`. Losses and metrics
                belong to the tasks, so `loss` and `metrics` are not accepted.
                `jit_compile=True` compiles the train step with XLA on the
                encoded path (the model's lookups do not compile, so Keras
                alone would refuse it); evaluation and prediction stay
                without XLA, as they may get raw values. Default `"auto"`:
                no XLA (on the census MMoE it saved 17-21% of an epoch in two
                runs and nothing in a third, docs/benchmarks.md; MGDA and
                Nash-MTL refuse it).

        Raises:
            ConfigError: unknown task in `loss_weights`, a negative weight, an
                unknown `loss_combination` or `gradients`, `loss`/`metrics`
                given, or `gradients="representation"` for a gradient-based
                weighting on a model whose architecture does not share one
                representation, or for one that refuses representation
                gradients (`Weighting.supports_representation_gradients`).
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
        weighting.check_gradients(gradients)
        jit_compile = kwargs.pop("jit_compile", "auto")
        if jit_compile is True:
            self._check_jit()
            if not weighting.compiles_with_xla:
                raise ConfigError(
                    f"jit_compile=True: the weighting "
                    f"{weighting.registered_name!r} does not compile with XLA in "
                    f"reasonable time. Use jit_compile='auto' (no XLA) with it.")
        # The raw graph's lookups do not compile with XLA, so Keras would turn
        # `jit_compile=True` off for the whole model: kmtl turns it on for the
        # train step, which runs the encoded path (`make_train_function`).
        super().compile(optimizer=optimizer,
                        jit_compile=False if jit_compile is True else jit_compile,
                        **kwargs)
        self._jit_train = jit_compile is True
        self.loss_weights = weights
        self.loss_combination = loss_combination
        weighting.build_tasks(self.task_names, weights)
        if weighting.gradient_based:
            weighting.build_gradients(
                sum(int(np.prod(v.shape)) for v in self.trainable_weights))
        self.weighting = weighting
        self.gradient_mode = gradients
        if not weighting.gradient_based:
            self.step_strategy = steps.LossWeightingStep()
        elif gradients == "representation":
            self.step_strategy = steps.RepresentationGradientStep(self)
        else:
            self.step_strategy = steps.ParameterGradientStep()
        self._compile_config = SerializableDict(
            optimizer=optimizer, loss_weights=loss_weights,
            loss_combination=loss_combination,
            weighting=weighting_module.serialize(weighting), gradients=gradients,
            jit_compile=jit_compile, **kwargs)

    def _check_jit(self):
        """Raises ConfigError unless the encoded path compiles with XLA."""
        inputs = self.encoded_inputs
        if inputs is None:
            raise ConfigError(
                f"jit_compile=True needs the encoded path, which model "
                f"{self.name!r} does not have (saved by kmtl 0.2, or wired by "
                f"hand). Use jit_compile='auto'.")
        submodel = _functional(inputs, self._outputs_struct)
        refused = [layer.name for layer in submodel._flatten_layers(
            include_self=False) if not layer.supports_jit]
        if refused:
            raise ConfigError(
                f"jit_compile=True: the layers {refused} do not compile with "
                f"XLA. Use jit_compile='auto'.")

    def make_train_function(self, force=False):
        """Keras's, with XLA when compiled with `jit_compile=True` (the
        train step then runs the encoded path only; see `compile`)."""
        if not getattr(self, "_jit_train", False):
            return super().make_train_function(force)
        self._jit_compile = True
        try:
            return super().make_train_function(force)
        finally:
            self._jit_compile = False

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, plus the callbacks the weighting method needs.

        The method's callbacks run first, so its state is up to date when a
        user's callback (e.g. `ModelCheckpoint`) saves the model. Given a
        `tf.data.Dataset` (which `make_dataset` shuffles itself), `shuffle`
        defaults to False: Keras ignores it for a dataset and warns at every
        `fit` when it is True, its default."""
        x = args[0] if args else kwargs.get("x")
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)
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

        Args:
            y: dict `{task: labels}`, each as `Task.encode` gives it.
            y_pred: dict `{task: (batch, units)}`, the model's outputs.
            sample_weight: dict `{task: (batch,)}` or None; 0 marks a row
                without a label for the task.

        Regression labels and predictions are standardized with the task's
        training mean and std first (see `Task.standardize`). Under
        `tf.distribute` each value is the replica's own mean (not divided by the
        number of replicas: the train step scales once, see
        `kmtl.models.steps`).
        """
        losses = {}
        for task in self.tasks:
            name = task.name
            weight = None if sample_weight is None else sample_weight.get(name)
            loss = self._task_losses[name](
                task.standardize(y[name]), task.standardize(y_pred[name]),
                sample_weight=weight)
            # A Keras loss divides its value by the replica count; undone here.
            losses[name] = unscale_loss_for_distribution(loss)
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
        """The total loss from per-task losses, by the weighting method (static
        loss weights unless `compile(weighting=...)` says otherwise).

        Args:
            task_losses: dict `{task: scalar}`, as `compute_task_losses`
                returns.
            labelled: `(tasks,)` bool tensor in `task_names` order, False for
                a task without labels in the batch; None: every task labelled.

        Returns:
            The scalar total loss, without regularization losses.
        """
        losses = self.stack_task_losses(task_losses)
        if labelled is None:
            labelled = ops.ones((len(self.tasks),), dtype="bool")
        total, _ = self.weighting.combine_losses(losses, labelled)
        return total

    def regularization_loss(self):
        """The sum of the layers' added losses (`self.losses`: weight
        regularizers, soft-sharing penalties), or 0.0 without any; not scaled
        for `tf.distribute`."""
        if not self.losses:
            return 0.0
        return ops.sum(self.losses)

    def _penalty_layer(self):
        """The architecture layer when it adds a sharing penalty (its class
        overrides `Architecture.penalty`: soft parameter sharing), else None."""
        architecture = self.architecture
        if (architecture is None
                or type(architecture).penalty is Architecture.penalty):
            return None
        return architecture

    def _sharing_penalty(self):
        """The architecture's `penalty()`, which its `add_loss` puts into
        `self.losses`; None without one."""
        if self.sharing_penalty_tracker is None:
            return None
        return ops.cast(self._penalty_layer().penalty(), "float32")

    @property
    def metrics(self):
        """Keras's metrics, without the task weight trackers when the
        weighting's weights are fixed (`Weighting.logs_weights`): the logs
        then have no constant `<task>_weight` columns."""
        metrics = super().metrics
        if self._logs_task_weights:
            return metrics
        hidden = {id(m) for m in self.task_weight_trackers}
        return [m for m in metrics if id(m) not in hidden]

    @property
    def _logs_task_weights(self):
        weighting = getattr(self, "weighting", None)
        return weighting is not None and weighting.logs_weights

    def _update_metrics(self, loss, task_losses, x, y, y_pred, sample_weight,
                        task_weights=None, penalty=None):
        batch_size = ops.shape(next(iter(x.values())))[0]
        self._loss_tracker.update_state(loss, sample_weight=batch_size)
        if penalty is not None:
            self.sharing_penalty_tracker.update_state(penalty)
        if task_weights is not None and self._logs_task_weights:
            for i, tracker in enumerate(self.task_weight_trackers):
                tracker.update_state(task_weights[i])
        for task, tracker in zip(self.tasks, self.task_loss_trackers):
            weight = None if sample_weight is None else sample_weight.get(task.name)
            tracker.update_state(
                task_losses[task.name],
                sample_weight=batch_size if weight is None else ops.sum(weight))
            # Metrics count each labelled row once: class weights and
            # self-paced weights change the loss, not what a metric measures.
            labelled = None if weight is None else ops.cast(weight > 0, "float32")
            start, end = self._metric_slices[task.name]
            for metric in self.task_metrics[start:end]:
                metric.update_state(y[task.name], y_pred[task.name],
                                    sample_weight=labelled)
        return self.get_metrics_result()

    def train_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        if getattr(self, "_jit_train", False) and not self.is_encoded(x):
            raise ConfigError(
                "A model compiled with jit_compile=True trains on encoded "
                "batches (make_dataset's default, encoded=True): the raw "
                "inputs' lookups do not compile with XLA.")
        step = self.step_strategy
        schedule = self.schedule
        with tf.GradientTape(persistent=step.persistent) as tape:
            y_pred, representation = step.forward(self, x)
            weights = sample_weight
            if schedule is not None and schedule.row_fraction is not None:
                weights = schedule.paced_weights(
                    self.row_losses(y, y_pred),
                    self._all_weights(x, sample_weight))
            logged = self.compute_task_losses(y, y_pred, weights)
            task_losses, labelled = self._weighting_losses(logged, weights)
            self.weighting.observe_losses(
                ops.stop_gradient(self.stack_task_losses(task_losses)), labelled)
            step_loss = step.loss(self, task_losses, labelled)
        gradients, step_loss = step.gradients(self, tape, step_loss, task_losses,
                                              labelled, representation)
        del tape
        # Before the update: the penalty `loss` holds.
        penalty = self._sharing_penalty()
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        if self.weighting.observes_losses_after_step:
            # The same batch's losses after the update (FAMO's reference form;
            # one more forward pass).
            after, after_labelled = self._weighting_losses(
                self.compute_task_losses(
                    y, self.forward(x, training=True), weights), weights)
            self.weighting.observe_losses_after_step(
                self.stack_task_losses(after), after_labelled)
        return self._update_metrics(step_loss.loss, logged, x, y, y_pred,
                                    sample_weight, step_loss.task_weights, penalty)

    def _weighting_losses(self, task_losses, weights):
        """The training task losses the weighting gets and which tasks are
        labelled: log losses under `log_loss`, then the schedule's scales.

        Args:
            task_losses: dict `{task: scalar}`, `compute_task_losses` with
                `weights`.
            weights: the batch's sample weights (self-paced when a schedule
                sets `row_fraction`).

        Returns:
            `(task_losses, labelled)`.
        """
        labelled = self.labelled_tasks(weights)
        if self.weighting.log_loss:
            # Before the schedule, so a task ramped in at scale s trains on
            # s log L_t.
            task_losses = steps.log_task_losses(self, task_losses, labelled)
        if self.schedule is not None:
            task_losses, labelled = self.schedule.scale(task_losses, labelled)
        return task_losses, labelled

    def row_losses(self, y, y_pred):
        """Each task's loss per row, before the reduction over rows.

        Args:
            y: dict `{task: labels}`; y_pred: dict `{task: (batch, units)}`.

        Returns:
            dict `{task: (batch,)}`: `keras.losses.Loss.call` of each task's
            loss on standardized labels and predictions (as
            `compute_task_losses`), without sample weights.
        """
        return {task.name: self._task_losses[task.name].call(
                    task.standardize(y[task.name]),
                    task.standardize(y_pred[task.name]))
                for task in self.tasks}

    def _all_weights(self, x, sample_weight):
        """`sample_weight` with a weight of 1 per row for any task it omits."""
        weights = dict(sample_weight or {})
        rows = ops.shape(next(iter(x.values())))[0]
        for name in self.task_names:
            if weights.get(name) is None:
                weights[name] = ops.ones((rows,), "float32")
        return weights

    def add_tasks(self, tasks, tower_units=None, tower_activation=None,
                  tower_dropout=None):
        """A new model with this model's tasks and `tasks`, on the same shared
        part: progressive training (`kmtl.models.progressive.add_tasks`, which
        describes it; the old tasks' predictions are unchanged until it
        trains).

        Args:
            tasks: list of fitted `kmtl.Task` (or their configs) to add.
            tower_units: list of int or None (default: this model's towers').
            tower_activation: str or None (default: this model's).
            tower_dropout: float or None (default: this model's).

        Returns:
            An uncompiled `kmtl.MultiTaskModel`.

        Raises:
            ConfigError: no task, a name the model already has, or an
                architecture whose weights cannot be split by task.
        """
        from kmtl.models.progressive import add_tasks  # progressive imports this
        return add_tasks(self, tasks, tower_units=tower_units,
                         tower_activation=tower_activation,
                         tower_dropout=tower_dropout)

    def attach_schedule(self):
        """The model's `TrainSchedule`, created if needed (see
        `kmtl.models.schedule`). A curriculum callback calls it from
        `set_model`, before `fit` traces the train step; the train function
        is traced again so it reads the schedule's variables."""
        if self.schedule is None:
            self.schedule = TrainSchedule(self.task_names)
        self.train_function = None
        return self.schedule

    def detach_schedule(self):
        """Removes the schedule (a curriculum callback calls it when `fit`
        ends): the next `fit` trains every task on every row again."""
        if self.schedule is not None:
            self.schedule = None
            self.train_function = None

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
            y_pred = self.forward(x, training=False)
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

    def test_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self.forward(x, training=False)
        task_losses = self.compute_task_losses(y, y_pred, sample_weight)
        labelled = self.labelled_tasks(sample_weight)
        # `loss` as the train step's (log losses under `log_loss`), so
        # `val_loss` compares with `loss`; `<task>_loss` stays raw in both.
        combined = (steps.log_task_losses(self, task_losses, labelled)
                    if self.weighting.log_loss else task_losses)
        total, task_weights = self.weighting.combine_losses(
            self.stack_task_losses(combined), labelled)
        loss = total + self.regularization_loss()
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



def _dtype_name(value):
    dtype = getattr(value, "dtype", None)
    return getattr(dtype, "name", str(dtype))


def _value_kind(value):
    """`"text"` or `"number"` for an array or tensor of such values; None when
    it cannot be told (a list, an object array of mixed values)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    if isinstance(dtype, tf.dtypes.DType):
        if dtype == tf.string:
            return "text"
        return "number" if (dtype.is_floating or dtype.is_integer
                            or dtype.is_bool) else None
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        return None
    if kind in "SU":
        return "text"
    if kind == "O":
        flat = np.asarray(value).ravel()
        if flat.size and all(isinstance(v, (str, bytes)) for v in flat[:100]):
            return "text"
        return None
    return "number" if kind in "biuf" else None


class _Submodels:
    """A cache of sub-models over a model's own graph (see `submodel`). A
    plain object, not a dict: Keras tracks the layers inside a dict or list
    assigned to a model, but not the attributes of other objects."""

    def __init__(self):
        self._items = {}

    def __contains__(self, key):
        return key in self._items

    def __getitem__(self, key):
        return self._items[key]

    def __setitem__(self, key, value):
        self._items[key] = value


def _functional(inputs, outputs):
    """`keras.Model(inputs, outputs)` from tensors inside a graph (Keras clones
    the nodes and reuses the layers), without Keras's warning that dict keys
    differ from the tensors' names (the encoded blocks' keys are kmtl's)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")
        return keras.Model(inputs, outputs)
