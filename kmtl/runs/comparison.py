"""`compare`: does multi-task learning help on this data? Single-task baselines
against multi-task variants, over seeds, scored by Δm.

What is trained, all on the same data, split and budget:

- **Single-task baselines**: one model per task, built by `build_model` with
  `tasks=[task]`: the same feature encoder, the config's architecture (or
  `compare.baseline`) with a single task, the same tower shape and one head. So
  the baseline of an MMoE config is a one-task MMoE (a mixture of experts with one
  gate), and of a shared-bottom config a plain MLP. It is trained with static
  weights (no weighting method: there is nothing to weigh). A derived task
  (ESMM's CTCVR = CTR x CVR) gets a plain binary baseline on its own target; a
  task without a target (ESMM's CVR) has nothing to score and gets none.
- **Multi-task variants**: every entry of `compare.variants` (architecture,
  options, weighting, gradients), or the config's own model when it is null.

Every model trains with the config's `training` section: the same epochs,
batch size, optimizer, learning rate, weight decay and early stopping on the
validation loss (best epoch restored). Keys the config leaves unset are chosen
from the number of training rows as `kmtl train` chooses them
(`kmtl.runs.training.prepare_run`), for the baselines and every variant
alike. Each model is trained once per seed. A seed sets
`training.seed` (weight initialisation, dropout, the order of the training
batches); the data split is the config's (`data.split.seed`) for every run. The
data is loaded, split and fitted once per compare.

Scores are taken on `compare.split` (default test). For each seed, Δm of a
variant is computed against the single-task baselines' mean over seeds
(`kmtl.measures.delta_m.delta_m`); the report gives its mean and sample std over
seeds. Negative transfer uses `negative_transfer` (multi-task mean worse than the
single-task mean beyond the two seed stds).

Task interference (gradient cosines and lookahead affinity, see
`kmtl.measures.interference`) is measured for each variant during its first
seed's training only, by a `TaskInterference` callback on fixed probe batches:
`compare.interference.batches` batches of rows drawn once (seed 0) from the
training split, averaged over the epochs.
"""

import copy
import datetime
import time

import keras
import numpy as np

from kmtl import weighting as weighting_module
from kmtl.callbacks.task_interference import TaskInterference
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.measures.delta_m import delta_m
from kmtl.measures.delta_m import metric_direction
from kmtl.measures.delta_m import negative_transfer
from kmtl.measures.delta_m import relative_changes
from kmtl.measures.delta_m import summarize_runs
from kmtl.runs.config import SINGLE_TASK
from kmtl.runs.config import BaselineConfig
from kmtl.runs.config import VariantConfig
from kmtl.runs.config import as_run_config
from kmtl.runs.config import shared_units_key
from kmtl.runs.config import size_defaults
from kmtl.runs.report import write_report
from kmtl.runs.run_dir import RunDir
from kmtl.runs.training import build_run_model
from kmtl.runs.training import precision_policy
from kmtl.runs.training import prepare_run
from kmtl.runs.training import run_model
from kmtl.tasks import Task

__all__ = ["SINGLE_TASK", "analyse", "baseline_config", "baseline_spec",
           "baseline_tasks", "compare", "resolve_variants", "seed_list",
           "with_shared_units"]


def _weighting_label(weighting, arguments=False):
    """The weighting's name for variant names; with `arguments`, its spec's
    arguments too (`cagrad(c=0.2)` -> `cagrad_c0.2`), so a grid over one
    method's settings names each variant apart."""
    if weighting is None:
        return "static"
    if isinstance(weighting, dict):
        return str(weighting.get("class_name", "custom")).lower()
    name, options = weighting_module.parse_spec(weighting)
    if arguments and options:
        name += "".join(f"_{key}{value}" for key, value in sorted(options.items()))
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in name)


def resolve_variants(config):
    """The multi-task variants of a config, with every key filled in.

    A variant key that is absent takes the config's value: `architecture` and
    `options` from `model` (options only when the architecture is the model's),
    `weighting` and `gradients` from `training`; `name` defaults to
    `<architecture>_<weighting name>` (`static` without a weighting). A list of
    weightings is a grid: one variant per weighting, named
    `<name or architecture>_<weighting name and arguments>` (`mmoe_cagrad_c0.2`).

    Returns:
        list of dicts with keys `name`, `architecture`, `options`, `weighting`,
        `gradients`.

    Raises:
        ConfigError: two variants have the same name, or a weighting is unknown.
    """
    config = as_run_config(config)
    model, training = config.model, config.training
    given = config.compare.variants or [VariantConfig()]
    variants = []
    for i, variant in enumerate(given):
        architecture = variant.architecture or model.architecture
        options = variant.options
        if options is None:
            options = model.options if architecture == model.architecture else {}
        weightings = (variant.weighting if "weighting" in variant.model_fields_set
                      else training.weighting)
        grid = isinstance(weightings, list)
        for weighting in (weightings if grid else [weightings]):
            try:
                if weighting is not None:
                    weighting_module.get(weighting)
                label = _weighting_label(weighting, arguments=grid)
            except ConfigError as error:
                raise ConfigError(
                    f"compare.variants[{i}].weighting: {error}") from None
            name = variant.name
            variants.append({
                "name": (name if name and not grid
                         else f"{name or architecture}_{label}"),
                "architecture": architecture,
                "options": copy.deepcopy(options),
                "weighting": weighting,
                "gradients": variant.gradients or training.gradients,
            })
    names = [v["name"] for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"compare.variants: the variant name(s) {duplicates} occur "
                          f"more than once. Give each variant a distinct `name`.")
    return variants


def baseline_spec(config):
    """`{"architecture", "options"}` of the single-task baselines:
    `compare.baseline`, else the config's `model`."""
    config = as_run_config(config)
    model = config.model
    given = config.compare.baseline or BaselineConfig()
    architecture = given.architecture or model.architecture
    options = given.options
    if options is None:
        options = model.options if architecture == model.architecture else {}
    return {"architecture": architecture, "options": copy.deepcopy(options)}


def seed_list(config, seeds=None):
    """The training seeds: `seeds` (a count or a list), else `compare.seeds`
    consecutive seeds from `training.seed`."""
    config = as_run_config(config)
    seeds = config.compare.seeds if seeds is None else seeds
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"seeds must be a positive integer. Received: "
                              f"{seeds!r}")
        start = config.training.seed
        return list(range(start, start + seeds))
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct integers. Received: {seeds!r}")
    return seeds


def with_shared_units(spec, rows):
    """A variant or baseline spec (`architecture`, `options`) whose options
    leave the shared part's sizes unset, with the sizes `kmtl train` would
    choose for `rows` training rows (`kmtl.runs.config.size_defaults`)."""
    key = shared_units_key(spec["architecture"], spec["options"])
    if key is None:
        return spec
    return {**spec, "options": {**spec["options"],
                                key: size_defaults(rows)["shared_units"]}}


def _run_config(config, spec, seed, weighting=None, gradients="parameters"):
    return config.model_copy(update={
        "model": config.model.model_copy(update={
            "architecture": spec["architecture"],
            "options": copy.deepcopy(spec["options"])}),
        "training": config.training.model_copy(update={
            "weighting": weighting, "gradients": gradients, "seed": seed}),
    })


def baseline_config(config, baseline, seed):
    """A single-task baseline's config: the multi-task schedules (task
    sampling, stages, a task curriculum) do not apply to one task; it trains
    every epoch on every row labelled for its task."""
    config = _run_config(config, baseline, seed)
    return config.model_copy(update={"training": config.training.model_copy(
        update={"sampling": None, "stages": None, "curriculum": None})})


def _variant_config(config, variant, seed):
    return _run_config(config, variant, seed, variant["weighting"],
                       variant["gradients"])


def baseline_tasks(tasks):
    """The single-task baselines' tasks: every task with a target, a derived
    task (ESMM's CTCVR) made a plain task on its own target (its parents are
    not in a one-task model); none for a task without a target."""
    return [Task.from_config({**t.get_config(), "derived_from": None})
            if t.derived_from else t for t in tasks if t.has_labels]


def counted_metrics(config, tasks):
    """`{task: [metric, ...]}` that Δm counts: `compare.metrics`, else every
    whole-task metric of every task with a target (its `metrics`, not its loss,
    nor the per-label or per-target metrics such as `auc_<label>`, which would
    outweigh the other tasks in the flat average).

    Raises:
        ConfigError: a listed metric is not one the task computes, a task
            without a target or with no metric to count, or a metric's
            direction is unknown and not in `compare.directions`.
    """
    config = as_run_config(config)
    section = config.compare
    given = section.metrics or {
        t.name: [m for m in t.metrics if m in t.metric_factories()]
        for t in tasks if t.has_labels}
    by_name = {t.name: t for t in tasks}
    for task_name, names in given.items():
        if not by_name[task_name].has_labels:
            raise ConfigError(
                f"compare.metrics.{task_name}: task {task_name!r} has no target "
                f"(target: []), so it has no baseline and nothing to score. "
                f"Remove it from compare.metrics.")
        if not names:
            # compare.metrics lists are checked non-empty with the config.
            raise ConfigError(
                f"Task {task_name!r} has no metrics (tasks[].metrics: []), so Δm "
                f"has nothing to count for it. Give the task metrics or list what "
                f"to count, e.g. compare.metrics: {{{task_name}: [loss]}}.")
        known = ["loss"] + list(by_name[task_name].metrics)
        for name in names:
            if name not in known:
                raise ConfigError(f"compare.metrics.{task_name}: task {task_name!r} "
                                  f"does not compute {name!r}. Its metrics: {known} "
                                  f"(add it to the task's `metrics`).")
            try:
                metric_direction(name, section.directions)
            except ValueError as error:
                raise ConfigError(f"compare.directions: {error}") from None
    return {name: list(names) for name, names in given.items()}


def _check_buildable(config, data, baseline, variants):
    """Builds every model once, so a bad option stops the compare before
    anything is trained or written."""
    seed = config.training.seed
    for task in baseline_tasks(data.tasks):
        try:
            build_run_model(baseline_config(config, baseline, seed), data, [task])
        except ConfigError as error:
            raise ConfigError(
                f"compare.baseline (single-task {baseline['architecture']!r} model "
                f"for task {task.name!r}): {error} Set compare.baseline to an "
                f"architecture that takes one task.") from None
    for i, variant in enumerate(variants):
        try:
            build_run_model(_variant_config(config, variant, seed), data)
        except ConfigError as error:
            raise ConfigError(f"compare.variants[{i}] ({variant['name']}): "
                              f"{error}") from None
    keras.backend.clear_session()


def _plain_history(history):
    return {key: [float(v) for v in values] for key, values in history.items()}


def _record(model, run, seed, tasks):
    return {"model": model, "tasks": [t.name for t in tasks], "seed": seed,
            "metrics": run.metrics, "history": _plain_history(run.history),
            "epochs": len(run.history.get("loss", [])),
            "seconds": round(run.seconds, 3), "parameters": run.parameters}


def _probe_data(data, batches):
    rows = min(len(data.train), batches * data.batch_size)
    probe = data.train.sample(n=rows, random_state=0)
    return make_dataset(probe, data.features, data.tasks, data.batch_size)


def _std(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def single_task_results(runs, split):
    """`{seed: {task: {metric: value}}}`: the single-task runs of each seed put
    together as one results dict."""
    combined = {}
    for run in runs:
        if run["model"] == SINGLE_TASK:
            (task,) = run["tasks"]
            combined.setdefault(run["seed"], {})[task] = run["metrics"][split][task]
    return combined


def analyse(runs, variants, split="test", metrics=None, directions=None,
            average="task"):
    """Δm, relative changes and negative transfer of each variant, from the runs.

    Args:
        runs: list of run records (`"model"`: `"single_task"` or a variant name,
            `"tasks"`, `"seed"`, `"metrics"`: `{split: {task: {metric: v}}}`,
            `"parameters"`, `"seconds"`), as in report.json.
        variants: list of variant names.
        split: the split scored.
        metrics: `{task: [metric, ...]}` or None, as `delta_m`.
        directions: `{metric: +1 or -1}` overrides.
        average: `"task"` or `"flat"`, as `delta_m`.

    Returns:
        dict with `single_task` (`summary`: `summarize_runs` of the baselines per
        seed, `parameters`: summed over the per-task models, `seconds`),
        `results` (`{name: {"summary", "delta_m": {"per_seed", "mean", "std",
        "n"}, "relative_changes", "negative_transfer", "parameters", "seconds"}}`)
        and `verdict` (`best`, `delta_m`, `std`, `n`, `negative_transfer`: the
        best variant's flagged tasks).
    """
    baseline_runs = single_task_results(runs, split)
    seeds = sorted(baseline_runs)
    baseline_list = [baseline_runs[s] for s in seeds]
    baseline_summary = summarize_runs(baseline_list)
    baseline = {task: {m: v["mean"] for m, v in values.items()}
                for task, values in baseline_summary.items()}
    single = [r for r in runs if r["model"] == SINGLE_TASK]
    result = {
        "single_task": {
            "summary": baseline_summary,
            "parameters": int(sum(r["parameters"] for r in single
                                  if r["seed"] == seeds[0])),
            "seconds": float(np.mean([r["seconds"] for r in single])),
        },
        "results": {},
    }
    for name in variants:
        own = sorted((r for r in runs if r["model"] == name), key=lambda r: r["seed"])
        per_seed = [r["metrics"][split] for r in own]
        scores = [delta_m(r, baseline, metrics, directions, average)
                  for r in per_seed]
        summary = summarize_runs(per_seed)
        means = {task: {m: v["mean"] for m, v in values.items()}
                 for task, values in summary.items()}
        result["results"][name] = {
            "summary": summary,
            "delta_m": {"per_seed": scores, "mean": float(np.mean(scores)),
                        "std": _std(scores), "n": len(scores)},
            "relative_changes": relative_changes(means, baseline, metrics,
                                                 directions),
            "negative_transfer": negative_transfer(per_seed, baseline_list, metrics,
                                                   directions),
            "parameters": own[0]["parameters"],
            "seconds": float(np.mean([r["seconds"] for r in own])),
        }
    best = max(variants, key=lambda n: result["results"][n]["delta_m"]["mean"])
    scores = result["results"][best]
    result["verdict"] = {
        "best": best,
        "delta_m": scores["delta_m"]["mean"],
        "std": scores["delta_m"]["std"],
        "n": scores["delta_m"]["n"],
        "negative_transfer": [task for task, flags in
                              scores["negative_transfer"].items()
                              if flags["negative"]],
    }
    return result


def compare(config, data_dir=None, output_dir="runs", seeds=None, log=print):
    """Trains single-task baselines and multi-task variants over seeds, scores
    them by Δm and writes a report (see the module docstring for the protocol).

    Writes a fresh directory `<output_dir>/<name>-compare-<timestamp>/` (never an
    earlier one) holding `report.json`, `report.md` and `plots/*.png` (see
    `kmtl.runs.report.write_report`). Models are not saved.

    Args:
        config: a `RunConfig` or a config mapping (`kmtl.runs.config`), with a
            `compare` section.
        data_dir: folder of the data files and built-in data sets.
        output_dir: where the compare directory is created, default `"runs"`.
        seeds: int (how many seeds, from `training.seed` on) or list of ints;
            default `compare.seeds`.
        log: callable taking one str, for progress lines (default `print`).

    Returns:
        The report dict (as in report.json), plus `"directory"`: the compare
        directory.

    Raises:
        ConfigError: a bad config, before anything is written.
        DataError: data that does not fit the config, before anything is written.

    Examples:
        >>> config = kmtl.runs.config.read_config("examples/penguins_compare.yaml")
        >>> report = compare(config, seeds=2)
        >>> report["verdict"]["best"], report["directory"]
    """
    config = as_run_config(config)
    with precision_policy(config):
        return _compare(config, data_dir, output_dir, seeds, log)


def _compare(config, data_dir, output_dir, seeds, log):
    section = config.compare
    if len(config.tasks) < 2:
        raise ConfigError("compare needs at least two tasks: a multi-task model is "
                          "compared with one single-task model per task.")
    seeds = seed_list(config, seeds)
    resolve_variants(config)  # bad variants fail before the data is read
    config, data = prepare_run(config, data_dir, log)
    rows = len(data.train)
    variants = [with_shared_units(v, rows) for v in resolve_variants(config)]
    baseline = with_shared_units(baseline_spec(config), rows)
    split = section.split
    if split not in data.held_out:
        raise ConfigError(f"compare.split: the {split} split is empty, so nothing "
                          f"can be scored on it. Give data.{split} or a non-zero "
                          f"data.split.{split}, or set compare.split to the other "
                          f"split.")
    metrics = counted_metrics(config, data.tasks)
    _check_buildable(config, data, baseline, variants)
    interference = section.interference
    probe = (_probe_data(data, interference.batches)
             if interference.enabled else None)
    compare_dir = RunDir.create(output_dir, f"{config.name}-compare")
    directory = compare_dir.path

    started = time.perf_counter()
    baselines = baseline_tasks(data.tasks)
    total = len(seeds) * (len(baselines) + len(variants))
    runs, matrices, done = [], {}, 0
    for seed in seeds:
        # run_model makes each model its own training dataset (from the run
        # config's seed): every model of a seed sees the same batches in the
        # same epoch orders (a dataset counts the epochs drawn from it).
        for task in baselines:
            run = run_model(baseline_config(config, baseline, seed), data,
                            tasks=[task])
            runs.append(_record(SINGLE_TASK, run, seed, [task]))
            keras.backend.clear_session()
            done += 1
            log(f"[{done}/{total}] seed {seed} single-task {task.name}: "
                f"{_short(run.metrics, split, metrics)} ({run.seconds:.1f} s)")
        for variant in variants:
            callbacks, probe_callback = [], None
            if probe is not None and seed == seeds[0]:
                probe_callback = TaskInterference(
                    probe, every=interference.every,
                    batches=interference.batches)
                callbacks.append(probe_callback)
            run = run_model(_variant_config(config, variant, seed), data,
                            callbacks=callbacks)
            runs.append(_record(variant["name"], run, seed, data.tasks))
            if probe_callback is not None and probe_callback.cosines is not None:
                matrices[variant["name"]] = {
                    "seed": seed, "tasks": [t.name for t in data.tasks],
                    "batches": interference.batches,
                    "cosines": np.asarray(probe_callback.cosines).tolist(),
                    "affinity": np.asarray(probe_callback.affinity).tolist(),
                }
            keras.backend.clear_session()
            done += 1
            log(f"[{done}/{total}] seed {seed} {variant['name']}: "
                f"{_short(run.metrics, split, metrics)} ({run.seconds:.1f} s)")

    names = [v["name"] for v in variants]
    analysis = analyse(runs, names, split, metrics, section.directions,
                       section.average)
    report = {
        "name": config.name,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "tasks": [t.get_config() for t in data.tasks],
        "rows": {"train": len(data.train),
                 **{s: (0 if f is None else len(f)) for s, f in
                    (("validation", data.validation), ("test", data.test))}},
        "seeds": seeds,
        "split": split,
        "metrics": metrics,
        "directions": {m: metric_direction(m, section.directions)
                       for names_ in metrics.values() for m in names_},
        "average": section.average,
        "baseline": baseline,
        "variants": variants,
        "runs": runs,
        **analysis,
        "interference": matrices,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_report(report, directory)
    compare_dir.mark_complete()
    verdict = analysis["verdict"]
    log(f"Best variant by Δm on {split}: {verdict['best']} "
        f"({verdict['delta_m']:+.2f} % ± {verdict['std']:.2f} % over "
        f"{verdict['n']} seed{'s' if verdict['n'] != 1 else ''}); negative transfer: "
        f"{', '.join(verdict['negative_transfer']) or 'none'}")
    log(f"Report: {directory}/report.md")
    log(f"Compare directory: {directory}")
    return {**report, "directory": directory}


def _short(metrics, split, counted):
    values = metrics.get(split, {})
    parts = [f"{task}_{m}={values[task][m]:.4f}" for task, names in counted.items()
             if task in values for m in names]
    return " ".join(parts)
