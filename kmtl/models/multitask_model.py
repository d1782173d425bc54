"""`MultiTaskModel`: a Functional Keras model with one output per task and a
training step that computes, weights and logs per-task losses."""

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution
from keras.src.losses.loss import unscale_loss_for_distribution
from keras.src.trainers.data_adapters.data_adapter_utils import unpack_x_y_sample_weight

from kmtl import tasks as tasks_module
from kmtl.errors import ConfigError
from kmtl.features import Feature

LOSS_COMBINATIONS = ("sum", "mean")
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
        **kwargs: passed to `keras.Model` (`name`, ...).

    Logs (and so TensorBoard): `loss`, `<task>_loss` and `<task>_<metric>` for each
    task metric, e.g. `income_loss`, `income_auc`.

    Raises:
        ConfigError: the output keys differ from the task names.
    """

    def __init__(self, inputs, outputs, name=None, *, tasks, **kwargs):
        # `tasks` is keyword-only so the positional signature stays Functional's
        # (inputs, outputs, name): Keras then saves and revives the graph itself.
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.tasks = [tasks_module.get(t) for t in tasks]
        names = [t.name for t in self.tasks]
        if sorted(names) != sorted(self.output_names):
            raise ConfigError(
                f"The model's outputs {sorted(self.output_names)} must be the task "
                f"names {sorted(names)}, one output per task."
            )
        self._task_losses = {t.name: t.build_loss() for t in self.tasks}
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{t.name}_loss")
                                   for t in self.tasks]
        self.task_metrics = []
        self._metric_slices = {}
        for task in self.tasks:
            start = len(self.task_metrics)
            self.task_metrics.extend(task.build_metrics())
            self._metric_slices[task.name] = (start, len(self.task_metrics))
        self.loss_weights = {t.name: t.loss_weight for t in self.tasks}
        self.loss_combination = "sum"

    # === Data description ===

    @property
    def task_names(self):
        return [t.name for t in self.tasks]

    @property
    def features(self):
        """The raw inputs as `kmtl.features.Feature`s (name, kind and dtype)."""
        features = []
        for name, tensor in self._inputs_struct.items():
            kind, dtype = _FEATURE_KINDS[keras.backend.standardize_dtype(tensor.dtype)]
            features.append(Feature(name, kind, dtype))
        return features

    # === Training ===

    def compile(self, optimizer="adam", loss_weights=None, loss_combination="sum",
                **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or identifier.
            loss_weights: dict `{task: weight}` overriding the tasks' loss weights.
            loss_combination: `"sum"` (weighted sum) or `"mean"` (weighted mean).
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
        super().compile(optimizer=optimizer, **kwargs)
        self.loss_weights = weights
        self.loss_combination = loss_combination
        self._compile_config = keras.src.saving.serialization_lib.SerializableDict(
            optimizer=optimizer, loss_weights=loss_weights,
            loss_combination=loss_combination, **kwargs)

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

    def combine_task_losses(self, task_losses):
        """The total loss from per-task losses, with the static loss weights.

        This is the one place a loss-weighting method changes the step."""
        total = 0.0
        for name, loss in task_losses.items():
            total = total + self.loss_weights[name] * loss
        if self.loss_combination == "mean":
            total = total / sum(self.loss_weights.values())
        return total

    def _total_loss(self, task_losses):
        loss = self.combine_task_losses(task_losses)
        if self.losses:
            loss = loss + scale_loss_for_distribution(ops.sum(self.losses))
        return loss

    def _update_metrics(self, loss, task_losses, x, y, y_pred, sample_weight):
        batch_size = ops.shape(next(iter(x.values())))[0]
        self._loss_tracker.update_state(
            unscale_loss_for_distribution(loss), sample_weight=batch_size)
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

    def train_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            task_losses = self.compute_task_losses(y, y_pred, sample_weight)
            loss = self._total_loss(task_losses)
            scaled_loss = self.optimizer.scale_loss(loss)
        trainable = self.trainable_weights
        gradients = tape.gradient(scaled_loss, trainable)
        self.optimizer.apply_gradients(zip(gradients, trainable))
        return self._update_metrics(loss, task_losses, x, y, y_pred, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        task_losses = self.compute_task_losses(y, y_pred, sample_weight)
        loss = self._total_loss(task_losses)
        return self._update_metrics(loss, task_losses, x, y, y_pred, sample_weight)

    # === Config ===

    def get_compile_config(self):
        if not self.compiled:
            return None
        return self._compile_config.serialize()

    def compile_from_config(self, config):
        config = keras.src.saving.serialization_lib.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {**super().get_config(), "tasks": [t.get_config() for t in self.tasks]}
