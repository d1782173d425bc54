"""`DeltaM`: logs Δm against single-task baselines at the end of every epoch."""

import keras

from kmtl.measures.delta_m import AVERAGES
from kmtl.measures.delta_m import delta_m


class DeltaM(keras.callbacks.Callback):
    """Adds Δm, the mean relative change against single-task baselines, to the
    epoch logs.

    Maninis, Radosavovic and Kokkinos, "Attentive Single-Tasking of Multiple
    Tasks", CVPR 2019 (arXiv:1904.08918); see `kmtl.measures.delta_m` for the
    formula and the two averaging conventions. At the end of each epoch it reads
    `logs[f"{prefix}{task}_{metric}"]` for every counted (task, metric) and
    writes `logs[f"{prefix}delta_m"]` in percent (positive = the multi-task
    model is better), so a `keras.callbacks.TensorBoard` or `CSVLogger` placed
    after it in the callback list records it, and `EarlyStopping(monitor=
    "val_delta_m", mode="max")` can use it.

    Args:
        baselines: dict `{task: {metric: float}}`, the single-task scores.
        metrics: None (every metric of `baselines` except `"loss"`), a list of
            metric names, or a dict `{task: [metric, ...]}`.
        directions: dict `{metric: +1 or -1}` for metrics whose direction kmtl
            does not know.
        average: `"task"` (default) or `"flat"`.
        prefix: str, default `"val_"`: the validation logs. `""` uses the
            training logs.

    Raises:
        ValueError: an unknown `average`; at epoch end, a log key is missing (e.g.
            `fit` got no `validation_data`, or `validation_freq` skipped this
            epoch).

    Examples:
        ```python
        baselines = {"income": {"auc": 0.94}, "marital": {"auc": 0.98}}
        model.fit(train, validation_data=val, epochs=10,
                  callbacks=[kmtl.callbacks.DeltaM(baselines),
                             keras.callbacks.TensorBoard("logs")])
        ```
    """

    def __init__(self, baselines, metrics=None, directions=None, average="task",
                 prefix="val_"):
        super().__init__()
        if average not in AVERAGES:
            raise ValueError(f"Unknown average {average!r}. Use one of {AVERAGES}.")
        if not baselines:
            raise ValueError("DeltaM needs single-task baselines {task: {metric: "
                             "value}}. Received: an empty dict")
        self.baselines = {task: dict(values) for task, values in baselines.items()}
        self.metrics = metrics
        self.directions = directions
        self.average = average
        self.prefix = prefix

    def _wanted(self):
        """`{task: [metric, ...]}`: the log entries Δm reads."""
        if isinstance(self.metrics, dict):
            return {task: [names] if isinstance(names, str) else list(names)
                    for task, names in self.metrics.items()}
        if self.metrics is None:
            return {task: [m for m in values if m != "loss"]
                    for task, values in self.baselines.items()}
        names = [self.metrics] if isinstance(self.metrics, str) else self.metrics
        return {task: [m for m in names if m in values]
                for task, values in self.baselines.items()}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        results = {}
        for task, names in self._wanted().items():
            results[task] = {}
            for name in names:
                key = f"{self.prefix}{task}_{name}"
                if key not in logs:
                    hint = (" Did `fit` get `validation_data` (and does "
                            "`validation_freq` include this epoch)?"
                            if self.prefix.startswith("val") else "")
                    raise ValueError(
                        f"DeltaM: the epoch logs have no {key!r} (task {task!r}, "
                        f"metric {name!r}).{hint} Log keys: {sorted(logs)}.")
                results[task][name] = logs[key]
        logs[f"{self.prefix}delta_m"] = delta_m(
            results, self.baselines, self.metrics, self.directions, self.average)
