"""Does multi-task learning help? Per-task relative changes against single-task
baselines, the Δm score and the negative-transfer flag.

All inputs are plain dicts `{task: {metric: float}}`, keyed as kmtl logs them
(`metrics.json`, `model.evaluate(..., return_dict=True)` regrouped by task): a
metric is named by its short name (`"auc"`, `"mae"`), not by the log key
(`"income_auc"`). Pure Python and NumPy: it runs after training, on numbers.

The score is Δm of Maninis, Radosavovic and Kokkinos, "Attentive Single-Tasking
of Multiple Tasks", CVPR 2019 (arXiv:1904.08918), as LibMTL and Nash-MTL (Navon
et al., "Multi-Task Learning as a Bargaining Game", ICML 2022, arXiv:2202.01017)
report it: the mean relative change of every metric of the multi-task model `m`
against the single-task baseline `b`, signed so that positive means better,

    Δm = 1/K sum_k (-1)^{l_k} (M_m,k - M_b,k) / M_b,k        (percent x 100)

with `l_k = 1` when lower is better for metric `k`.
"""

import math

import numpy as np

# Short metric names (as in each task type's `Task.metric_factories()`, plus the
# common Keras names) by direction: +1 when higher is better, -1 when lower is better.
HIGHER_IS_BETTER = (
    "auc", "prc", "accuracy", "binary_accuracy", "categorical_accuracy",
    "sparse_categorical_accuracy", "top_k_accuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "precision", "recall", "r2", "r2_score",
    "f1", "f1_score", "fbeta_score", "iou", "mean_iou",
)
LOWER_IS_BETTER = (
    "loss", "crossentropy", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "mae", "mse", "rmse", "msle", "mape",
    "mean_absolute_error", "mean_squared_error", "root_mean_squared_error",
    "mean_squared_logarithmic_error", "mean_absolute_percentage_error", "hinge",
    "squared_hinge", "log_cosh", "kl_divergence", "poisson",
)
DIRECTIONS = {**{m: 1 for m in HIGHER_IS_BETTER}, **{m: -1 for m in LOWER_IS_BETTER}}
AVERAGES = ("task", "flat")


def metric_direction(metric, directions=None):
    """+1 if a higher value of `metric` is better, -1 if a lower one is.

    Args:
        metric: str, the metric's short name as kmtl logs it after the task name
            (`"auc"` in `income_auc`, `"rmse"`, `"loss"`).
        directions: dict `{metric: +1 or -1}` or None, overriding the built-in
            table (`HIGHER_IS_BETTER`, `LOWER_IS_BETTER`).

    Returns:
        int, +1 or -1.

    Raises:
        ValueError: the metric is unknown and not in `directions`, or an override
            is not +1 or -1.

    Examples:
        >>> metric_direction("auc"), metric_direction("mae_height")
        (1, -1)
    """
    if directions and metric in directions:
        value = directions[metric]
        if value not in (1, -1) or isinstance(value, bool):
            raise ValueError(f"directions[{metric!r}] must be +1 (higher is better) "
                             f"or -1 (lower is better). Received: {value!r}")
        return int(value)
    if metric in DIRECTIONS:
        return DIRECTIONS[metric]
    # A variant of a known metric (`auc_micro`, `auc_<label>`, `mae_<target>`):
    # the longest known name it starts with.
    known = [m for m in DIRECTIONS if metric.startswith(m + "_")]
    if known:
        return DIRECTIONS[max(known, key=len)]
    raise ValueError(
        f"Unknown metric {metric!r}: kmtl does not know whether higher or lower is "
        f"better. Pass directions={{{metric!r}: +1}} (higher is better) or "
        f"directions={{{metric!r}: -1}} (lower is better).")


def _counted_metrics(results, metrics):
    """`{task: [metric, ...]}`: which (task, metric) pairs count.

    `metrics=None`: every metric in `results[task]` except `"loss"` (the training
    objective, not an evaluation metric; list it to count it). A list: the listed
    metrics each task has (each listed metric must occur for some task). A dict:
    exactly the listed metrics of the listed tasks.
    """
    if isinstance(metrics, dict):
        counted = {}
        for task, names in metrics.items():
            if task not in results:
                raise ValueError(f"metrics names task {task!r}, which the results "
                                 f"do not have. Tasks in the results: "
                                 f"{sorted(results)}.")
            names = [names] if isinstance(names, str) else list(names)
            for name in names:
                if name not in results[task]:
                    raise ValueError(f"Task {task!r} has no result for metric "
                                     f"{name!r}. Its metrics: "
                                     f"{sorted(results[task])}.")
            counted[task] = names
    elif metrics is None:
        counted = {task: [m for m in values if m != "loss"]
                   for task, values in results.items()}
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        counted = {task: [m for m in names if m in values]
                   for task, values in results.items()}
        for name in names:
            if not any(name in found for found in counted.values()):
                raise ValueError(f"No task has a result for metric {name!r}. "
                                 f"Metrics in the results: "
                                 f"{sorted({m for v in results.values() for m in v})}.")
    if not counted:
        raise ValueError("No tasks to compare: the results are empty.")
    for task, names in counted.items():
        if not names:
            raise ValueError(f"Task {task!r} has no metric to compare (results: "
                             f"{sorted(results[task])}). Choose them with "
                             f"`metrics=`.")
    return counted


def _finite(value, what):
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} is not finite. Received: {value!r}")
    return value


def relative_changes(results, baselines, metrics=None, directions=None):
    """Per-task, per-metric relative change of a multi-task model against its
    single-task baselines, in percent, positive = better.

    For each counted metric: `100 * s * (M_mt - M_st) / |M_st|` with `s` the
    metric's direction (+1 higher is better, -1 lower is better; see
    `metric_direction`). Dividing by `|M_st|` keeps the sign meaningful for a
    metric that can be negative (R^2).

    Args:
        results: dict `{task: {metric: float}}`, the multi-task model's scores.
        baselines: dict `{task: {metric: float}}`, each task's single-task score
            (tasks that are not compared may be absent or extra).
        metrics: None (every metric of `results` except `"loss"`), a list of
            metric names (those of each task that it has), or a dict
            `{task: [metric, ...]}` (exactly these; other tasks are left out).
        directions: dict `{metric: +1 or -1}` overriding `metric_direction`.

    Returns:
        dict `{task: {metric: percent}}`.

    Raises:
        ValueError: a baseline task or metric is missing, a baseline is 0, a value
            is not finite, a metric's direction is unknown, or nothing is left to
            compare.

    Examples:
        >>> relative_changes({"a": {"auc": 0.75}}, {"a": {"auc": 0.5}})
        {'a': {'auc': 50.0}}
    """
    changes = {}
    for task, names in _counted_metrics(results, metrics).items():
        if task not in baselines:
            raise ValueError(f"No single-task baseline for task {task!r}. "
                             f"Baseline tasks: {sorted(baselines)}.")
        changes[task] = {}
        for name in names:
            if name not in baselines[task]:
                raise ValueError(f"No single-task baseline for metric {name!r} of "
                                 f"task {task!r}. Its baseline metrics: "
                                 f"{sorted(baselines[task])}.")
            base = _finite(baselines[task][name], f"Baseline {task!r} {name!r}")
            if base == 0:
                raise ValueError(f"The single-task baseline of task {task!r} "
                                 f"metric {name!r} is 0: the relative change is "
                                 f"undefined. Leave it out with `metrics=`.")
            value = _finite(results[task][name], f"Result {task!r} {name!r}")
            sign = metric_direction(name, directions)
            changes[task][name] = 100.0 * sign * (value - base) / abs(base)
    return changes


def delta_m(results, baselines, metrics=None, directions=None, average="task"):
    """Δm: the mean relative change against single-task baselines, in percent.

    Maninis, Radosavovic and Kokkinos, "Attentive Single-Tasking of Multiple
    Tasks", CVPR 2019 (arXiv:1904.08918). With `r_t,k = 100 s_k (M_mt,t,k -
    M_st,t,k) / |M_st,t,k|` the relative change of metric `k` of task `t` (see
    `relative_changes`; `s_k = (-1)^{l_k}`):

    - `average="flat"`: the mean over all K counted (task, metric) pairs,
      `Δm = 1/K sum_{t,k} r_t,k`. The convention of LibMTL and of Nash-MTL
      (Navon et al., ICML 2022): a task with more metrics weighs more.
    - `average="task"` (default): the mean over the T tasks of each task's mean
      over its K_t metrics, `Δm = 1/T sum_t 1/K_t sum_k r_t,k`: every task
      counts once. Equal to `"flat"` when every task has one metric.

    Positive Δm: the multi-task model is better on average.

    Args:
        results: dict `{task: {metric: float}}`, the multi-task model's scores.
        baselines: dict `{task: {metric: float}}`, the single-task scores.
        metrics: None, a list or a dict, as in `relative_changes`.
        directions: dict `{metric: +1 or -1}` overriding `metric_direction`.
        average: `"task"` (default) or `"flat"`.

    Returns:
        float, percent.

    Raises:
        ValueError: an unknown `average`, or as `relative_changes`.

    Examples:
        >>> delta_m({"a": {"auc": 0.75}, "b": {"mae": 2.0}},
        ...         {"a": {"auc": 0.5}, "b": {"mae": 1.0}})
        -25.0
    """
    if average not in AVERAGES:
        raise ValueError(f"Unknown average {average!r}. Use one of {AVERAGES}.")
    changes = relative_changes(results, baselines, metrics, directions)
    if average == "flat":
        return float(np.mean([r for task in changes.values()
                              for r in task.values()]))
    return float(np.mean([np.mean(list(task.values()))
                          for task in changes.values()]))


def summarize_runs(runs):
    """Mean, standard deviation and count of each task metric over seeds.

    The standard deviation is the sample one (`ddof=1`, Bessel's correction)
    when a metric has more than one run, and 0 for a single run. A metric that
    some runs lack (or hold as None: no labelled rows) is summarized over the
    runs that have it (`n` says how many).

    Args:
        runs: list of dicts `{task: {metric: float}}`, one per seed.

    Returns:
        dict `{task: {metric: {"mean": float, "std": float, "n": int}}}`.

    Raises:
        ValueError: `runs` is empty.

    Examples:
        >>> summarize_runs([{"a": {"auc": 0.7}}, {"a": {"auc": 0.9}}])["a"]["auc"]["n"]
        2
    """
    if isinstance(runs, dict):
        runs = [runs]
    runs = list(runs)
    if not runs:
        raise ValueError("summarize_runs needs at least one run. Received: []")
    values = {}
    for run in runs:
        for task, task_metrics in run.items():
            for name, value in task_metrics.items():
                if value is None:  # no value in that run (no labelled rows)
                    continue
                values.setdefault(task, {}).setdefault(name, []).append(float(value))
    summary = {}
    for task, task_metrics in values.items():
        summary[task] = {}
        for name, found in task_metrics.items():
            std = float(np.std(found, ddof=1)) if len(found) > 1 else 0.0
            summary[task][name] = {"mean": float(np.mean(found)), "std": std,
                                   "n": len(found)}
    return summary


def _means(summary):
    return {task: {name: stats["mean"] for name, stats in task_metrics.items()}
            for task, task_metrics in summary.items()}


def negative_transfer(multi_task_runs, single_task_runs, metrics=None,
                      directions=None):
    """Flags the tasks that multi-task training makes worse beyond seed noise.

    A metric shows negative transfer when the multi-task mean over seeds is worse
    than the single-task mean and the two intervals `mean +/- std` (sample std,
    see `summarize_runs`) do not overlap: `s (mean_mt - mean_st) < 0` and
    `|mean_mt - mean_st| > std_mt + std_st` (touching intervals overlap). A task
    is flagged when any of its counted metrics is. With one run per side both
    stds are 0, so any drop is flagged: run several seeds.

    Args:
        multi_task_runs: list of dicts `{task: {metric: float}}`, one per seed
            (a single dict is one run).
        single_task_runs: the same for the single-task baselines.
        metrics: None, a list or a dict, as in `relative_changes`.
        directions: dict `{metric: +1 or -1}` overriding `metric_direction`.

    Returns:
        dict `{task: {"relative_change": float, "negative": bool, "metrics":
        {metric: {"multi_task_mean", "multi_task_std", "multi_task_n",
        "single_task_mean", "single_task_std", "single_task_n",
        "relative_change", "negative"}}}}`. `relative_change` is in percent,
        computed from the means (`relative_changes`); a task's is the mean over
        its metrics (its own Δm).

    Raises:
        ValueError: as `relative_changes` or `summarize_runs`.

    Examples:
        >>> flags = negative_transfer([{"a": {"auc": 0.70}}, {"a": {"auc": 0.72}}],
        ...                           [{"a": {"auc": 0.80}}, {"a": {"auc": 0.82}}])
        >>> flags["a"]["negative"]
        True
    """
    multi = summarize_runs(multi_task_runs)
    single = summarize_runs(single_task_runs)
    changes = relative_changes(_means(multi), _means(single), metrics, directions)
    report = {}
    for task, task_changes in changes.items():
        rows = {}
        for name, change in task_changes.items():
            mt, st = multi[task][name], single[task][name]
            apart = abs(mt["mean"] - st["mean"]) > mt["std"] + st["std"]
            rows[name] = {
                "multi_task_mean": mt["mean"], "multi_task_std": mt["std"],
                "multi_task_n": mt["n"], "single_task_mean": st["mean"],
                "single_task_std": st["std"], "single_task_n": st["n"],
                "relative_change": change, "negative": bool(change < 0 and apart),
            }
        report[task] = {
            "relative_change": float(np.mean(list(task_changes.values()))),
            "negative": any(row["negative"] for row in rows.values()),
            "metrics": rows,
        }
    return report
