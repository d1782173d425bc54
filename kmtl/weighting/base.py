"""The `Weighting` base class: how a multi-task model turns task losses (or task
gradients) into one update.

Two families share this interface:

- **loss weighting** (`gradient_based = False`): `combine_losses` maps the per-task
  losses to a total loss; one backward pass follows, as in plain Keras.
- **gradient aggregation / surgery** (`gradient_based = True`): the train step
  computes each task's gradient of the shared variables, stacked as a `(tasks,
  parameters)` matrix, and `aggregate_gradients` returns the update direction.
  Task-specific variables (towers, heads) always get their own task's gradient.

A `Weighting` is a Keras layer so that its state (log-variances, GradNorm weights,
loss histories) is tracked, saved in `.keras` files and restored; it is never
called by the model's forward pass, so it is not part of an exported serving
signature.

Masking: `labelled` is a `(tasks,)` bool tensor, False for a task with no labelled
row in the batch. Such a task's loss is exactly 0 and its gradient is zero; a
method must leave it out (weight 0) rather than treat it as a solved task.

Scaling: a method sees a replica's own losses and gradients, never scaled for
`tf.distribute` or mixed precision; the train step (`kmtl.models.steps`)
scales what a method returns (the total loss, the direction) once.

Log losses: every method takes `log_loss` (default False; `db_mtl` defaults it
to True). With it, the train step hands the method `log(L_t + 1e-8)` for each
labelled task instead of `L_t` (`kmtl.models.steps.log_task_losses`): the
loss-scale balancing of Lin et al., "Dual-Balancing for Multi-Task Learning",
arXiv:2308.12029, Sec. 3.1, which makes every task's gradient
`grad L_t / (L_t + 1e-8)`, invariant to the scale of its loss.

State that must move only while training (FAMO's logits) is updated in
`observe_losses`, which only the train step calls; `evaluate` and validation
call `combine_losses` alone.
"""

import keras
from keras import ops

from kmtl.errors import ConfigError
from kmtl.registry import Registry


class Weighting(keras.layers.Layer):
    """Base class of the weighting family. Subclasses override `combine_losses`
    (loss weighting) or set `gradient_based = True` and override
    `aggregate_gradients`.

    A weighting is a Keras layer for its state only: the model never calls it
    on inputs. The shapes are those of its two methods, with `tasks` the
    number of tasks and `parameters` the number of shared scalars.

    Args:
        log_loss: bool, default False. Train on `log(L_t + 1e-8)` instead of
            each labelled task loss `L_t` (see the module). The `<task>_loss`
            logs stay the raw losses; `loss` (and `val_loss`, which uses the same
            transform) is the method's total of the log losses.
        **kwargs: `keras.layers.Layer` arguments (`name`).

    Input shape:
        `combine_losses`: `losses` and `labelled`, `(tasks,)` each.
        `aggregate_gradients`: `gradients` `(tasks, parameters)`, `losses` and
        `labelled` `(tasks,)`.

    Output shape:
        `combine_losses`: a scalar total loss and `(tasks,)` weights.
        `aggregate_gradients`: a `(parameters,)` direction and `(tasks,)`
        weights.

    Raises:
        ConfigError: `log_loss=True` for a method that refuses it
            (`log_loss_refusal`).
    """

    gradient_based = False
    #: Whether the train step compiles with XLA (`compile(jit_compile=True)`).
    compiles_with_xla = True
    #: Whether the train step logs the method's task weights
    #: (`<task>_weight`); False for fixed weights, which the config states.
    logs_weights = True
    #: Why `log_loss=True` is meaningless for the method (it then refuses it),
    #: or None: the method works on any losses.
    log_loss_refusal = None
    #: Whether the method takes `compile(gradients="representation")`.
    supports_representation_gradients = True
    #: Whether the train step recomputes the batch's losses after the update
    #: for `observe_losses_after_step` (one more forward pass).
    observes_losses_after_step = False

    def __init__(self, log_loss=False, **kwargs):
        super().__init__(**kwargs)
        name = getattr(type(self), "registered_name", type(self).__name__)
        if not isinstance(log_loss, bool):
            raise ConfigError(f"The weighting {name!r}: log_loss must be True or "
                              f"False. Received: log_loss={log_loss!r}")
        if log_loss and self.log_loss_refusal is not None:
            raise ConfigError(
                f"The weighting {name!r} does not take log_loss=True: "
                f"{self.log_loss_refusal} Leave log_loss out, or use a method "
                f"that takes it (e.g. 'static(log_loss=True)').")
        self.log_loss = log_loss
        self.task_names = None

    def check_gradients(self, gradients):
        """Refuses a gradient mode the method cannot take.

        Args:
            gradients: `"parameters"` or `"representation"`
                (`MultiTaskModel.compile(gradients=...)`).

        Raises:
            ConfigError: `gradients="representation"` for a gradient-based
                method whose `supports_representation_gradients` is False.
        """
        if (gradients == "representation" and self.gradient_based
                and not self.supports_representation_gradients):
            name = getattr(type(self), "registered_name", type(self).__name__)
            raise ConfigError(
                f"The weighting {name!r} does not take gradients='representation' "
                f"(its state is per shared parameter, and the representation's "
                f"rows change with every batch). Use gradients='parameters'.")

    def build_tasks(self, task_names, loss_weights=None):
        """Creates the method's state for `task_names`. Called by `compile`.

        Args:
            task_names: list of str.
            loss_weights: dict `{task: float}` of static weights (from the tasks
                or `compile(loss_weights=...)`); methods may use them as priors.
        """
        self.task_names = list(task_names)
        weights = loss_weights or {}
        self.static_weights = [float(weights.get(n, 1.0)) for n in self.task_names]
        self.built = True

    @property
    def num_tasks(self):
        """The number of tasks (int); set by `build_tasks`."""
        return len(self.task_names)

    def combine_losses(self, losses, labelled):
        """Total loss and effective task weights.

        Args:
            losses: `(tasks,)` float tensor, each the task's mean loss over its
                labelled rows (0 for a task without labels).
            labelled: `(tasks,)` bool tensor.

        Returns:
            `(total, weights)`: a scalar, and the `(tasks,)` effective weights
            (logged as `<task>_weight`), 0 for an unlabelled task.

        The base class: the static weights (`sum_t w_t L_t`).
        """
        weights = ops.convert_to_tensor(self.static_weights, dtype=losses.dtype)
        weights = weights * ops.cast(labelled, losses.dtype)
        return ops.sum(weights * losses), weights

    def build_gradients(self, num_parameters):
        """Creates state sized by the number of shared parameters (DB-MTL's
        moving averages of the task gradients). Called by `compile` after
        `build_tasks`, for a gradient-based method; must be idempotent.

        The shared parameters are only known when the train step is traced, so
        `num_parameters` is an upper bound: the number of trainable scalars of
        the model. A method uses the first `parameters` columns of what it
        allocates. Default: nothing.

        Args:
            num_parameters: int, the model's trainable scalars.
        """

    def observe_losses(self, losses, labelled):
        """Updates training-only state from a training batch's task losses.

        The train step calls it before `combine_losses` (or the task
        gradients); `test_step` never does, so validation and `evaluate` leave
        the state as it is. Default: nothing.

        Args:
            losses: `(tasks,)` float32, the losses the method is about to
                weight (log losses under `log_loss`), a replica's own; no
                gradient flows back through them.
            labelled: `(tasks,)` bool.
        """

    def observe_losses_after_step(self, losses, labelled):
        """Updates training-only state from the same batch's task losses after
        the optimizer's update. The train step calls it only when
        `observes_losses_after_step` is True (FAMO's `update="same_batch"`),
        after a second forward pass in training mode. Default: nothing.

        Args:
            losses: `(tasks,)` float32, as `observe_losses`'s, after the update.
            labelled: `(tasks,)` bool.
        """

    def aggregate_gradients(self, gradients, losses, labelled):
        """The update direction of the shared variables.

        Args:
            gradients: `(tasks, parameters)` float32: row `t` is task `t`'s gradient
                of its (unweighted) loss with respect to the shared variables,
                flattened, not scaled for replicas or mixed precision.
            losses: `(tasks,)` task losses.
            labelled: `(tasks,)` bool.

        Returns:
            `(direction, weights)`: `(parameters,)` and the `(tasks,)` effective
            task weights (for logging).
        """
        raise NotImplementedError

    def callbacks(self):
        """Keras callbacks the method needs during `fit` (e.g. DWA's epoch loss
        history); `MultiTaskModel.fit` adds them. Default: none."""
        return []

    def get_config(self):
        return {**super().get_config(), "log_loss": self.log_loss}


# The weighting family: `@register("pcgrad")` on a subclass registers it under
# the field's standard names (the first is canonical) and as a Keras
# serializable, so `.keras` files holding it load without `custom_objects`.
WEIGHTINGS = Registry("weighting", Weighting, default="static",
                      common=("log_loss",))
"""The registry of weightings (`kmtl.registry.Registry`); None looks up
`"static"`."""
register = WEIGHTINGS.register
"""Class decorator registering a `Weighting` subclass under its names
(`Registry.register`): `@kmtl.weighting.register("name")`."""
