"""Step strategies: how one training batch's task losses become the gradients
of `MultiTaskModel.train_step`.

`MultiTaskModel.compile` picks one from the weighting method and its
`gradients` argument:

- `LossWeightingStep`: one backward pass of the weighted total loss, as in plain
  Keras (static weights, uncertainty, DWA, GLS, RLW);
- `ParameterGradientStep`: each task's gradient of the shared parameters,
  combined by `Weighting.aggregate_gradients` (MGDA, PCGrad, CAGrad, ...);
- `RepresentationGradientStep`: each task's gradient of the shared
  representation, combined the same way, then one backward pass of the
  combined direction through the layers below it (Sener and Koltun's MGDA-UB).

The train step records the forward pass and the task losses on a tape, asks
the strategy for the loss it differentiates (`loss`, on the tape), then for the
gradients (`gradients`, after the tape). A weighting always sees a replica's
own task losses (the mean over its labelled rows) and gradients of them;
scaling for `tf.distribute` (divide by the replica count, so that the replicas'
summed gradients are the global batch mean) and for mixed precision (the
optimizer's loss scale) happens here only, as the seed of each backward pass
(`backward_seed`).
"""

import warnings
from typing import NamedTuple

from keras import ops

from kmtl._keras_internals import scale_loss_for_distribution
from kmtl.errors import ConfigError
from kmtl.models import shared_parameters
from kmtl.weighting._gradients import sum_over_replicas


class StepLoss(NamedTuple):
    """The loss of one train step and the task weights it used.

    Attributes:
        loss: scalar, the total loss (task losses weighted, plus regularization),
            a replica's own value: what `loss` logs.
        task_weights: `(tasks,)` effective task weights (logged as
            `<task>_weight`), or None until the gradients decide them.
    """

    loss: object
    task_weights: object


def backward_seed(model, dtype="float32"):
    """The seed of every backward pass: `1 / replicas` times the optimizer's
    loss scale (mixed precision), a scalar of `dtype`.

    Seeding `tape.gradient(loss, ..., output_gradients=seed)` is the gradient of
    `seed * loss`: the replica-scaled, loss-scaled loss Keras's own trainer
    differentiates. Dividing a gradient by the seed gives the replica's own,
    unscaled gradient.
    """
    one = ops.convert_to_tensor(1.0, "float32")
    seed = model.optimizer.scale_loss(scale_loss_for_distribution(one))
    return ops.cast(seed, dtype)


#: Added to a task loss inside the log of `log_task_losses` (LibMTL's DB-MTL
#: value; representable in float32, not in float16).
LOG_EPSILON = 1e-8


def log_task_losses(model, task_losses, labelled):
    """The log losses a weighting with `log_loss=True` trains on.

    Each labelled task's loss `L_t` becomes `log(max(L_t, 0) + 1e-8)` in
    float32, whose gradient is `grad L_t / (L_t + 1e-8)`: Lin et al.,
    "Dual-Balancing for Multi-Task Learning", arXiv:2308.12029, Sec. 3.1
    (loss-scale balancing). An unlabelled task's loss stays exactly 0 with a
    zero gradient (not `log(1e-8)`, and not NaN: the log never sees its 0).
    A negative loss (none of kmtl's built-in losses) is clipped to 0, so it
    logs as `log(1e-8)` and gets no gradient.

    Under `tf.distribute`, `L_t` in the log and in the divisor is the mean of
    the replicas' losses (over those with labels; one all-reduce of `2 T`
    numbers), while the gradient is the replica's own: replica `r` differentiates
    `log L_t + (L_t^r - L_t^r|const) / L_t`, so the replicas' summed step is
    the single-device gradient `grad L_t / L_t`, not a mean of per-replica
    ratios.

    Args:
        model: the `MultiTaskModel`.
        task_losses: dict `{task: scalar}`, a replica's own task losses (any
            float dtype).
        labelled: `(tasks,)` bool in `model.task_names` order.

    Returns:
        dict `{task: float32 scalar}`.
    """
    local = {n: ops.cast(task_losses[n], "float32") for n in model.task_names}
    # Values only (no gradient path, which would tie every task's log loss to
    # every other task's variables).
    mask = ops.cast(labelled, "float32")
    values = ops.stop_gradient(ops.stack(list(local.values())))
    share, summed = sum_over_replicas(mask, mask * values)
    losses = ops.divide_no_nan(summed, share)
    positive = ops.where(labelled, ops.maximum(losses, 0.0), 1.0)
    values = ops.log(positive + LOG_EPSILON)
    scales = ops.where(labelled & (losses >= 0), 1.0 / (positive + LOG_EPSILON), 0.0)
    logs = {}
    for index, (name, loss) in enumerate(local.items()):
        # `value + 0` carrying the gradient `scale * grad L_t^r`.
        moving = (loss - ops.stop_gradient(loss)) * scales[index]
        logs[name] = ops.where(labelled[index], values[index] + moving, 0.0)
    return logs


def _gradient(tape, target, sources, seed):
    return tape.gradient(target, sources,
                         output_gradients=ops.cast(seed, target.dtype))


class TrainStep:
    """Base class of the step strategies.

    A strategy is plain Python state of the model (Keras does not track it), so
    it adds nothing to the model's weights or saved files.
    """

    # Whether `gradients` takes several backward passes of the tape.
    persistent = False

    def forward(self, model, x):
        """The forward pass in training mode, on the tape.

        Returns:
            `(y_pred, representation)`: the outputs `{task: prediction}`, and
            the shared representation (None unless the strategy needs it).
        """
        return model.forward(x, training=True), None

    def loss(self, model, task_losses, labelled):
        """The step's loss, on the tape.

        Args:
            model: the `MultiTaskModel`.
            task_losses: dict `{task: scalar}`, a replica's own task losses.
            labelled: `(tasks,)` bool.

        Returns:
            A `StepLoss`.
        """
        raise NotImplementedError

    def gradients(self, model, tape, step_loss, task_losses, labelled,
                  representation):
        """The gradients of `model.trainable_weights`, after the tape.

        Args:
            model: the `MultiTaskModel`.
            tape: the `tf.GradientTape` that recorded the forward pass, the
                task losses and `loss` (persistent when `self.persistent`).
            step_loss: what `loss` returned.
            task_losses: dict `{task: scalar}`, as given to `loss`.
            labelled: `(tasks,)` bool.
            representation: what `forward` returned with the outputs.

        Returns:
            `(gradients, step_loss)`: a list aligned with
            `model.trainable_weights` (scaled as Keras's trainer scales them),
            and the final `StepLoss`.
        """
        raise NotImplementedError


class LossWeightingStep(TrainStep):
    """One backward pass of `Weighting.combine_losses(losses)` plus the
    regularization losses, as Keras's own train step."""

    def loss(self, model, task_losses, labelled):
        losses = model.stack_task_losses(task_losses)
        total, task_weights = model.weighting.combine_losses(losses, labelled)
        return StepLoss(total + model.regularization_loss(), task_weights)

    def gradients(self, model, tape, step_loss, task_losses, labelled,
                  representation):
        gradients = _gradient(tape, step_loss.loss, model.trainable_weights,
                              backward_seed(model))
        return gradients, step_loss


class _TaskGradientStep(TrainStep):
    """Shared by the gradient-based strategies: per-task backward passes, the
    regularization gradients added on top, and the logged loss
    `sum_t w_t L_t + regularization` with the weights the method chose."""

    persistent = True

    def loss(self, model, task_losses, labelled):
        # Only the regularization is known before the gradients.
        return StepLoss(model.regularization_loss(), None)

    def _finish(self, model, tape, step_loss, task_losses, gradients, task_weights):
        if model.losses:
            extra = _gradient(tape, step_loss.loss, model.trainable_weights,
                              backward_seed(model))
            gradients = [g if e is None else (e if g is None else g + e)
                         for g, e in zip(gradients, extra)]
        losses = model.stack_task_losses(task_losses)
        loss = ops.sum(task_weights * losses) + step_loss.loss
        return gradients, StepLoss(loss, task_weights)


class ParameterGradientStep(_TaskGradientStep):
    """Per-task gradients of the shared parameters ->
    `Weighting.aggregate_gradients`.

    A parameter that only one task's loss reaches (its tower and head, its gate
    or its slice of a stacked tower) gets that task's gradient; one that several
    reach (encoder, shared experts) is shared: the tasks' gradients of it,
    unscaled and flattened into a `(tasks, parameters)` matrix, go to the
    weighting, whose direction is split back into the variables. Which
    parameters are shared is decided when the step is traced
    (`kmtl.models.shared_parameters`).
    """

    def gradients(self, model, tape, step_loss, task_losses, labelled,
                  representation):
        variables = model.trainable_weights
        seed = backward_seed(model)
        per_task = [_gradient(tape, task_losses[name], variables, seed)
                    for name in model.task_names]
        parts = model.gradient_parts(per_task, variables)
        directions = {}
        if any(part.shared for part in parts):
            matrix = shared_parameters.gradient_matrix(
                per_task, parts, variables) / seed
            direction, task_weights = model.weighting.aggregate_gradients(
                matrix, model.stack_task_losses(task_losses), labelled)
            directions = shared_parameters.split_direction(
                direction * seed, parts, variables)
        else:
            # Read when the step is traced, so said once per trace.
            warnings.warn(
                f"Model {model.name!r}: the tasks share no trained parameter, so "
                f"the gradient-based weighting {type(model.weighting).__name__} "
                f"has nothing to combine; each task's parameters get its own "
                f"gradient, as with equal weights.", stacklevel=2)
            task_weights = ops.cast(labelled, "float32")
        gradients = shared_parameters.assemble(
            parts, variables,
            lambda part: directions.get(part) if part.shared
            else shared_parameters.own_gradient(per_task, part))
        return self._finish(model, tape, step_loss, task_losses, gradients,
                            task_weights)


class RepresentationGradientStep(_TaskGradientStep):
    """MGDA-UB: the task gradients of the shared representation `z`
    `(batch, d)` go to `Weighting.aggregate_gradients`, then one backward pass
    of the direction runs through the layers below `z`; the layers above it
    (towers, heads) get their own task's gradient.

    Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018, arXiv:1810.04650 (the upper bound, MGDA-UB).

    Args:
        model: the `MultiTaskModel`; its `architecture` must give every task
            one shared representation (`shares_representation`).

    Raises:
        ConfigError: the model has no architecture layer, or one that gives
            each task its own representation.
    """

    def __init__(self, model):
        architecture = model.architecture
        if architecture is None:
            raise ConfigError(
                "gradients='representation' needs the model's architecture layer "
                "(kmtl.architectures.Architecture), and the model has none. Use "
                "gradients='parameters'.")
        if not architecture.shares_representation:
            raise ConfigError(
                f"gradients='representation' needs one representation shared by "
                f"every task, but the architecture layer '{architecture.name}' "
                f"gives each task its own. Use architecture='shared_bottom' or "
                f"gradients='parameters'.")
        outputs = architecture.output
        representation = (outputs[0] if isinstance(outputs, (list, tuple))
                          else outputs)
        # `inputs -> (outputs, representation)` over the model's own layers,
        # from the raw or the encoded inputs (`MultiTaskModel.submodel`).
        self.outputs = [model._outputs_struct, representation]

    def forward(self, model, x):
        y_pred, representation = model.submodel(self.outputs, x)(x, training=True)
        return y_pred, representation

    def gradients(self, model, tape, step_loss, task_losses, labelled,
                  representation):
        variables = model.trainable_weights
        seed = backward_seed(model)
        rows = [ops.reshape(ops.cast(
            _gradient(tape, task_losses[name], representation, seed), "float32"),
            (-1,)) for name in model.task_names]
        direction, task_weights = model.weighting.aggregate_gradients(
            ops.stack(rows) / seed, model.stack_task_losses(task_losses), labelled)
        direction = ops.cast(ops.reshape(direction * seed, ops.shape(representation)),
                             representation.dtype)
        gradients = tape.gradient(representation, variables,
                                  output_gradients=direction)
        above = [i for i, g in enumerate(gradients) if g is None]
        # One backward pass of `seed * sum_t L_t` (a list of targets is summed).
        targets = [task_losses[name] for name in model.task_names]
        own = tape.gradient(targets, [variables[i] for i in above],
                            output_gradients=[ops.cast(seed, t.dtype)
                                              for t in targets])
        for i, g in zip(above, own):
            gradients[i] = g
        return self._finish(model, tape, step_loss, task_losses, gradients,
                            task_weights)
