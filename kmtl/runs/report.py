"""The report of a `kmtl compare` run: report.json, report.md and PNG plots.

`write_report(report, directory)` takes the report dict that
`kmtl.runs.comparison` builds and writes, in `directory`:

- `report.json`: everything (config, per-run metrics and per-epoch histories,
  Δm per seed, relative changes, negative-transfer flags, interference matrices,
  timings, parameter counts, and the plot paths); strict JSON, a NaN is `null`;
- `plots/*.png`: per-task validation curves of every model, the Δm bar chart
  with seed error bars, the task-weight trajectories of the variants whose
  weights change, and the interference heatmaps;
- `report.md`: a one-paragraph verdict, the tables, then the plots by relative
  path.
"""

import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kmtl.plotting.curves import plot_curves
from kmtl.plotting.curves import plot_delta_m
from kmtl.plotting.curves import plot_task_weights
from kmtl.plotting.heatmap import plot_heatmap
from kmtl.runs.config import SINGLE_TASK

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOT_DIR = "plots"
# A task weight that moves less than this over training counts as constant.
CONSTANT_WEIGHT = 1e-6


def verdict_text(report):
    """The one-paragraph verdict: the best variant by Δm, its Δm ± std over seeds,
    and the tasks that lost to their single-task baseline (or "none")."""
    verdict = report["verdict"]
    best = verdict["best"]
    seeds = verdict["n"]
    text = (f"**Best variant by Δm: `{best}`**, Δm = {verdict['delta_m']:+.2f} % "
            f"± {verdict['std']:.2f} % (mean ± std over {seeds} seed"
            f"{'s' if seeds != 1 else ''}) on the {report['split']} split, against "
            f"single-task `{report['baseline']['architecture']}` baselines.")
    if verdict["delta_m"] <= 0:
        text += (" No variant beats the single-task baselines on average: here "
                 "multi-task learning does not help.")
    elif seeds > 1 and verdict["delta_m"] <= verdict["std"]:
        text += " The gain is within the seed noise."
    lost = verdict["negative_transfer"]
    flags = _variant(report, best)["negative_transfer"]
    if lost:
        parts = [f"`{task}` ({flags[task]['relative_change']:+.2f} %)"
                 for task in lost]
        text += (" Tasks that lost to their single-task model beyond seed noise "
                 f"(negative transfer): {', '.join(parts)}.")
    else:
        text += " Tasks that lost to their single-task model (negative transfer): none."
    others = len(report["variants"]) - 1
    if others:
        ranking = sorted(report["variants"], key=lambda v: -_variant(
            report, v["name"])["delta_m"]["mean"])
        text += " Ranking: " + ", ".join(
            f"`{v['name']}` {_variant(report, v['name'])['delta_m']['mean']:+.2f} %"
            for v in ranking) + "."
    return text


def _variant(report, name):
    return report["results"][name]


def _cell(stats, digits=4):
    if stats["n"] > 1:
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return f"{stats['mean']:.{digits}f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_table(report):
    """Markdown: per-task metrics (mean ± std over seeds) of every model."""
    pairs = [(task, m) for task, names in report["metrics"].items() for m in names]
    header = ["model"] + [f"{task} {m}" for task, m in pairs] + ["parameters"]
    single = report["single_task"]
    rows = [[f"{SINGLE_TASK} (one model per task)"]
            + [_cell(single["summary"][task][m]) for task, m in pairs]
            + [f"{single['parameters']:,}"]]
    for variant in report["variants"]:
        scores = _variant(report, variant["name"])
        rows.append([variant["name"]]
                    + [_cell(scores["summary"][task][m]) for task, m in pairs]
                    + [f"{scores['parameters']:,}"])
    return _table(header, rows)


def delta_m_table(report):
    """Markdown: Δm of every variant, per-seed values, per-task relative change
    (mean over the task's metrics, `⚠` = negative transfer), cost."""
    tasks = list(report["metrics"])
    header = (["variant", "architecture", "weighting", "Δm (%)", "per seed"]
              + [f"{t} (%)" for t in tasks]
              + ["negative transfer", "parameters", "s / run"])
    rows = []
    for variant in sorted(report["variants"], key=lambda v: -_variant(
            report, v["name"])["delta_m"]["mean"]):
        scores = _variant(report, variant["name"])
        delta = scores["delta_m"]
        flags = scores["negative_transfer"]
        per_task = []
        for task in tasks:
            cell = f"{flags[task]['relative_change']:+.2f}"
            per_task.append(cell + (" ⚠" if flags[task]["negative"] else ""))
        lost = [t for t in tasks if flags[t]["negative"]]
        rows.append([
            f"`{variant['name']}`", variant["architecture"],
            _weighting_name(variant["weighting"]),
            f"{delta['mean']:+.2f} ± {delta['std']:.2f}",
            ", ".join(f"{v:+.2f}" for v in delta["per_seed"]),
            *per_task, ", ".join(lost) or "none",
            f"{scores['parameters']:,}", f"{scores['seconds']:.1f}",
        ])
    return _table(header, rows)


def _weighting_name(weighting):
    if weighting is None:
        return "static"
    if isinstance(weighting, dict):
        return str(weighting.get("class_name", "custom"))
    return str(weighting)


def _save(figure, directory, name):
    path = os.path.join(PLOT_DIR, f"{name}.png")
    figure.savefig(os.path.join(directory, path), dpi=100)
    return path


def _histories(report, model, task=None):
    return [r["history"] for r in report["runs"] if r["model"] == model
            and (task is None or r["tasks"] == [task])]


def _curve_key(report, task):
    metric = report["metrics"][task][0]
    histories = _histories(report, SINGLE_TASK, task)
    key = f"val_{task}_{metric}"
    if any(key in h for h in histories):
        return key
    return f"{task}_{metric}"


def weights_change(histories, task_names):
    """True when some `<task>_weight` log moves by more than `CONSTANT_WEIGHT`
    over the epochs of some run (a weighting method that adapts the weights)."""
    for history in histories:
        for task in task_names:
            values = history.get(f"{task}_weight", [])
            if len(values) and np.ptp(values) > CONSTANT_WEIGHT:
                return True
    return False


def draw_plots(report, directory):
    """Draws every plot into `directory/plots/`; returns `{kind: ...}` of paths
    relative to `directory`: `curves` `{task: path}`, `delta_m` path,
    `task_weights` `{variant: path}`, `interference` `{variant: path}`."""
    os.makedirs(os.path.join(directory, PLOT_DIR), exist_ok=True)
    plots = {"curves": {}, "delta_m": None, "task_weights": {}, "interference": {}}
    names = [v["name"] for v in report["variants"]]
    for task in report["metrics"]:
        key = _curve_key(report, task)
        histories = {SINGLE_TASK: _histories(report, SINGLE_TASK, task)}
        histories.update({name: _histories(report, name) for name in names})
        figure = plot_curves(histories, key, title=f"{task}: {key}")
        plots["curves"][task] = _save(figure, directory, f"curves_{task}")
    deltas = [_variant(report, n)["delta_m"] for n in names]
    figure = plot_delta_m(names, [d["mean"] for d in deltas],
                          [d["std"] for d in deltas],
                          title=f"Δm on {report['split']} (error bar: std over "
                                f"{len(report['seeds'])} seeds)")
    plots["delta_m"] = _save(figure, directory, "delta_m")
    tasks = [t["name"] for t in report["tasks"]]
    for name in names:
        histories = _histories(report, name)
        if weights_change(histories, tasks):
            figure = plot_task_weights(histories, tasks,
                                       title=f"{name}: task weights per epoch")
            plots["task_weights"][name] = _save(figure, directory,
                                                f"task_weights_{name}")
    for name, matrices in report["interference"].items():
        plots["interference"][name] = _save(
            interference_figure(name, matrices), directory, f"interference_{name}")
    return plots


def interference_figure(name, matrices):
    """Two heatmaps side by side: gradient cosines and lookahead affinity."""
    labels = matrices["tasks"]
    size = len(labels)
    figure = Figure(figsize=(2 * max(3.5, 0.9 * size + 2.5),
                             max(2.8, 0.5 * size + 1.8)), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    plot_heatmap(matrices["cosines"], labels, labels, ax=left, cmap="coolwarm",
                 vmin=-1.0, vmax=1.0, title="gradient cosine")
    affinity = np.asarray(matrices["affinity"], dtype=float)
    finite = affinity[np.isfinite(affinity)]
    limit = float(np.max(np.abs(finite))) if finite.size else 1.0
    plot_heatmap(affinity, labels, labels, ax=right, cmap="coolwarm",
                 vmin=-limit or -1.0, vmax=limit or 1.0,
                 value_format=lambda v: f"{v:.2g}",
                 title="lookahead affinity (row helps column)")
    figure.suptitle(f"{name}: task interference")
    return figure


def _special_tasks(tasks):
    """The baselines' exceptions: derived tasks and tasks without a target."""
    derived = [t["name"] for t in tasks if t.get("derived_from")]
    unlabelled = [t["name"] for t in tasks if t.get("target") == []]
    text = ""
    if derived:
        text += (f" A derived task ({', '.join(derived)}) is compared with a "
                 f"plain single-task model on its own target.")
    if unlabelled:
        text += (f" A task without a target ({', '.join(unlabelled)}) has no "
                 f"baseline and is not scored.")
    return text


def render_markdown(report):
    """report.md's text (the plots must already be in `report["plots"]`)."""
    plots = report["plots"]
    seeds = report["seeds"]
    baseline = report["baseline"]
    counted = ", ".join(f"{task} {'/'.join(names)}"
                        for task, names in report["metrics"].items())
    lines = [
        f"# Does multi-task learning help? `{report['name']}`", "",
        verdict_text(report), "",
        "## Protocol", "",
        f"- Data: {report['rows']['train']:,} training, "
        f"{report['rows']['validation']:,} validation and "
        f"{report['rows']['test']:,} test rows, one split for every run.",
        f"- Seeds {seeds}: a seed sets the weight initialisation and the order of "
        f"the training batches, not the split. Every model trains once per seed "
        f"with the same epochs, batch size, optimizer and early stopping on the "
        f"validation loss.",
        f"- Single-task baselines: one `{baseline['architecture']}` model per task "
        f"(options {baseline['options'] or '{}'}), with the same encoder and tower, "
        f"static weights." + _special_tasks(report.get("tasks", [])),
        f"- Scores on the {report['split']} split. Δm (Maninis et al., CVPR 2019) "
        f"counts {counted}, averaged "
        + ("per task (each task counts once)" if report["average"] == "task"
           else "over all (task, metric) pairs")
        + ". Δm is computed per seed against the single-task baselines' mean over "
        "seeds; ± is the sample std over seeds. Positive = better than single-task.",
        "- Negative transfer: a task's multi-task mean is worse than its "
        "single-task mean and the two mean ± std intervals do not overlap.",
        f"- Wall clock of the whole compare: {report['seconds']:.0f} s.", "",
        f"## Per-task metrics ({report['split']}, mean ± std over seeds)", "",
        metrics_table(report), "",
        "## Δm against the single-task baselines", "",
        delta_m_table(report), "",
        "## Plots", "",
        "### Validation curves", "",
    ]
    lines += ["Per task, its first counted metric on the validation split per "
              "epoch: each line is a model's mean over seeds, the band spans the "
              "seeds' minimum to maximum (runs end at different epochs under early "
              "stopping).", ""]
    for task, path in plots["curves"].items():
        lines += [f"![{task}]({path})", ""]
    lines += ["### Δm per variant", "", f"![Δm]({plots['delta_m']})", "",
              "### Task weights", ""]
    if plots["task_weights"]:
        lines += ["The `<task>_weight` logs per epoch of the variants whose "
                  "weighting method changes the weights.", ""]
        for name, path in plots["task_weights"].items():
            lines += [f"![{name}]({path})", ""]
    else:
        lines += ["No variant's task weights change during training (static or "
                  "equal weights).", ""]
    lines += ["### Task interference", ""]
    if plots["interference"]:
        first = next(iter(report["interference"].values()))
        lines += [f"Gradient cosine between the tasks' gradients of the shared "
                  f"parameters (negative = conflict), and lookahead affinity "
                  f"(Fifty et al., NeurIPS 2021; row = task whose gradient step is "
                  f"taken, column = task whose loss is measured, positive = the "
                  f"step lowers that loss). Measured on {first['batches']} fixed "
                  f"probe batch(es) of the training split and averaged over the "
                  f"epochs of seed {first['seed']}.", ""]
        for name, path in plots["interference"].items():
            if np.isnan(np.asarray(report["interference"][name]["cosines"],
                                   "float64")).all():
                lines += [f"`{name}`: the tasks share no trained parameter, so "
                          f"there is no interference to measure (all NaN).", ""]
            lines += [f"![{name}]({path})", ""]
    else:
        lines += ["Not measured (`compare.interference.enabled: false`).", ""]
    return "\n".join(lines)


def _json_safe(value):
    """NaN and infinities -> None (null), so report.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_report(report, directory):
    """Draws the plots and writes report.json and report.md into `directory`.

    Adds `report["plots"]` (paths relative to `directory`).

    Args:
        report: dict, the report `kmtl.runs.compare` builds (its runs,
            summaries, Δm, flags and interference matrices).
        directory: str. An existing folder; the plots go to its `plots/`.

    Returns:
        `(json_path, markdown_path)`.
    """
    return write_report_files(report, directory, draw_plots, render_markdown)


def plot_links(report):
    """The closing `## Plots` section of a report: one Markdown image line per
    entry of `report["plots"]` (`{name: relative path}`), as a list of lines."""
    return (["", "## Plots", ""]
            + [f"![{name}]({path})" for name, path in report.get("plots", {}).items()]
            + [""])


def write_report_files(report, directory, draw, render):
    """Sets `report["plots"] = draw(report, directory)`, then writes
    `report.json` (strict JSON, NaN as null) and `render(report)` as
    `report.md` into `directory`: the files of a compare or a consolidate
    report.

    Returns:
        `(json_path, markdown_path)`.
    """
    report["plots"] = draw(report, directory)
    json_path = os.path.join(directory, REPORT_JSON)
    with open(json_path, "w") as handle:
        json.dump(_json_safe(report), handle, indent=1, allow_nan=False)
    markdown_path = os.path.join(directory, REPORT_MD)
    with open(markdown_path, "w") as handle:
        handle.write(render(report))
    return json_path, markdown_path
