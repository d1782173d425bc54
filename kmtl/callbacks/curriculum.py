"""Curriculum training as Keras callbacks: tasks join over epochs
(`TaskCurriculum`), rows enter from easy to hard (`SelfPacedLearning`).

Both set the model's `TrainSchedule` (`kmtl.models.schedule`) at the start of
each epoch from the epoch number alone, so a run resumed at epoch k (or a
model saved mid-run, reloaded and fitted with `initial_epoch=k`) continues the
schedule where it was. They change only the training loss: validation losses
and metrics always cover every task and every labelled row.
"""

import math

import keras

from kmtl.errors import ConfigError


class TaskCurriculum(keras.callbacks.Callback):
    """Tasks join training in order, their loss weight ramped in.

    Curriculum learning (Bengio, Louradour, Collobert and Weston, "Curriculum
    Learning", ICML 2009) over tasks: the first group of `order` trains from
    epoch 0, the next joins `interval` epochs later, and so on. A task that
    has joined at epoch `s` has its loss multiplied at epoch `e` by
    `min(1, (e - s + 1) / ramp_epochs)`; before it joins its loss is 0 and it
    counts as unlabelled, so a weighting method (DWA, MGDA, ...) leaves it out.
    Its validation loss and metrics are logged throughout.

    Args:
        order: list of task names, or of lists of names (a group joins
            together); every task of the model exactly once.
        interval: int >= 1, default 1. Epochs between two groups joining.
        ramp_epochs: int >= 1, default 1. Epochs from joining to the full
            loss weight (1: full weight at once).

    Logs:
        `<task>_scale`: the factor of the task's loss in the epoch.

    Raises:
        ConfigError: an empty order, a task listed twice, a non-positive
            `interval` or `ramp_epochs`; at `fit`, a name that is not a task of
            the model, or a task of the model left out.

    Examples:
        >>> curriculum = kmtl.callbacks.TaskCurriculum(
        ...     ["never_married", "income"], interval=2, ramp_epochs=2)
        >>> curriculum.scales(2)   # income joins at epoch 2, half weight
        {'never_married': 1.0, 'income': 0.5}
        >>> model.fit(train, epochs=10, callbacks=[curriculum])
    """

    def __init__(self, order, interval=1, ramp_epochs=1):
        super().__init__()
        groups = [[item] if isinstance(item, str) else item for item in order or []]
        names = [name for group in groups for name in group]
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(
                f"TaskCurriculum: `order` must be a non-empty list of task names "
                f"(or lists of them). Received: order={order!r}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"TaskCurriculum: `order` lists {repeated} more "
                              f"than once; list each task once.")
        for key, value in (("interval", interval), ("ramp_epochs", ramp_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TaskCurriculum: `{key}` must be an integer "
                                  f">= 1. Received: {key}={value!r}")
        self.order = groups
        self.interval = interval
        self.ramp_epochs = ramp_epochs
        self.start = {name: index * interval
                      for index, group in enumerate(groups) for name in group}
        self._scales = None

    @classmethod
    def by_loss(cls, losses, interval=1, ramp_epochs=1):
        """A curriculum ordering the tasks by loss, lowest (easiest) first.

        Args:
            losses: dict `{task: loss}`, e.g. each task's validation loss when
                trained alone (`kmtl train` measures it with
                `training.curriculum.order: by_loss`).
            interval: as for `TaskCurriculum`.
            ramp_epochs: as for `TaskCurriculum`.

        Raises:
            ConfigError: a loss that is not a finite number.
        """
        for name, value in losses.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"TaskCurriculum.by_loss: the loss of task "
                                  f"{name!r} must be a finite number. "
                                  f"Received: {value!r}")
        order = sorted(losses, key=lambda name: (losses[name], name))
        return cls(order, interval=interval, ramp_epochs=ramp_epochs)

    def scales(self, epoch):
        """`{task: factor}` of each task's loss at `epoch` (0-based)."""
        return {name: min(1.0, max(0.0, (epoch - start + 1) / self.ramp_epochs))
                for name, start in self.start.items()}

    def set_model(self, model):
        super().set_model(model)
        listed = set(self.start)
        tasks = list(model.task_names)
        unknown = sorted(listed - set(tasks))
        missing = [t for t in tasks if t not in listed]
        if unknown or missing:
            problem = (f"names {unknown}, which are not tasks of the model" if unknown
                       else f"leaves out {missing}")
            raise ConfigError(
                f"TaskCurriculum: `order` {problem}. The model's tasks are "
                f"{tasks}; list each once.")
        self._scales = model.attach_schedule().use_task_scales()

    def on_epoch_begin(self, epoch, logs=None):
        scales = self.scales(epoch)
        self._scales.assign([scales[name] for name in self.model.task_names])

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for name, value in self.scales(epoch).items():
                logs[f"{name}_scale"] = value

    def on_train_end(self, logs=None):
        self.model.detach_schedule()


class SelfPacedLearning(keras.callbacks.Callback):
    """Rows enter training from easy to hard (self-paced learning).

    Kumar, Packer and Koller, "Self-Paced Learning for Latent Variable Models",
    NeurIPS 2010: each step trains on the rows whose loss is below a threshold
    that grows over training, until every row is in. Here, per task and batch,
    the `fraction` of labelled rows with the lowest current loss keep their
    sample weight and the others get 0 (a quantile threshold, which does not
    depend on the scale of each task's loss); `fraction` grows linearly from
    `start_fraction` at epoch 0 to 1 at epoch `epochs`, then stays 1.

    Args:
        start_fraction: float in (0, 1], default 0.5. The share of each batch's
            labelled rows (per task) trained on at epoch 0.
        epochs: int >= 1, default 5. The epoch from which every row trains.

    Logs:
        `self_paced_fraction`: the epoch's share.

    Raises:
        ConfigError: `start_fraction` outside (0, 1] or `epochs` < 1.

    Examples:
        >>> pacing = kmtl.callbacks.SelfPacedLearning(start_fraction=0.6, epochs=4)
        >>> [pacing.fraction(e) for e in range(5)]
        [0.6, 0.7, 0.8, 0.9, 1.0]
    """

    def __init__(self, start_fraction=0.5, epochs=5):
        super().__init__()
        if (isinstance(start_fraction, bool)
                or not isinstance(start_fraction, (int, float))
                or not 0 < start_fraction <= 1):
            raise ConfigError(f"SelfPacedLearning: `start_fraction` must be in "
                              f"(0, 1]. Received: start_fraction={start_fraction!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"SelfPacedLearning: `epochs` must be an integer >= "
                              f"1. Received: epochs={epochs!r}")
        self.start_fraction = float(start_fraction)
        self.epochs = epochs
        self._fraction = None

    def fraction(self, epoch):
        """The share of labelled rows trained on at `epoch` (0-based)."""
        progress = min(1.0, epoch / self.epochs)
        return round(self.start_fraction + (1 - self.start_fraction) * progress, 12)

    def set_model(self, model):
        super().set_model(model)
        self._fraction = model.attach_schedule().use_row_fraction()

    def on_epoch_begin(self, epoch, logs=None):
        self._fraction.assign(self.fraction(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["self_paced_fraction"] = self.fraction(epoch)

    def on_train_end(self, logs=None):
        self.model.detach_schedule()
