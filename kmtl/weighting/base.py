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
"""

import keras
from keras import ops

from kmtl.registry import Registry


class Weighting(keras.layers.Layer):
    """Base class of the weighting family. Subclasses override `combine_losses`
    (loss weighting) or set `gradient_based = True` and override
    `aggregate_gradients`.

    A weighting is a Keras layer for its state only: the model never calls it
    on inputs. The shapes are those of its two methods, with `tasks` the
    number of tasks and `parameters` the number of shared scalars.

    Args:
        **kwargs: `keras.layers.Layer` arguments (`name`).

    Input shape:
        `combine_losses`: `losses` and `labelled`, `(tasks,)` each.
        `aggregate_gradients`: `gradients` `(tasks, parameters)`, `losses` and
        `labelled` `(tasks,)`.

    Output shape:
        `combine_losses`: a scalar total loss and `(tasks,)` weights.
        `aggregate_gradients`: a `(parameters,)` direction and `(tasks,)`
        weights.
    """

    gradient_based = False
    #: Whether the train step compiles with XLA (`compile(jit_compile=True)`).
    compiles_with_xla = True
    #: Whether the train step logs the method's task weights
    #: (`<task>_weight`); False for fixed weights, which the config states.
    logs_weights = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.task_names = None

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
        return super().get_config()


# The weighting family: `@register("pcgrad")` on a subclass registers it under
# the field's standard names (the first is canonical) and as a Keras
# serializable, so `.keras` files holding it load without `custom_objects`.
WEIGHTINGS = Registry("weighting", Weighting, default="static")
"""The registry of weightings (`kmtl.registry.Registry`); None looks up
`"static"`."""
register = WEIGHTINGS.register
"""Class decorator registering a `Weighting` subclass under its names
(`Registry.register`): `@kmtl.weighting.register("name")`."""
