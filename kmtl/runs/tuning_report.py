"""The report of a `kmtl tune` search: report.json, report.md and plots.

`write_tuning_report(report, directory)` takes the report dict that
`kmtl.runs.tuning` builds and writes, in `directory`:

- `report.json`: the algorithm, budget, objective, search space, the
  single-task baselines (`delta_m`), every trial's record (values,
  objective, per-task validation metrics, status, seconds, message) and the
  best trial; strict JSON;
- `plots/objective.png`: the objective of each trial against its number,
  with the best so far as a step line;
- `plots/parameters.png`: the objective against each searched key's value
  (one panel per key; log axis for a log range, one position per choice);
- `report.md`: a summary, the best trial's values, the trials table ranked
  by the objective, and the plots.
"""

import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kmtl.runs.report import PLOT_DIR
from kmtl.runs.report import plot_links
from kmtl.runs.report import write_report_files

__all__ = ["render_markdown", "write_tuning_report"]

TOP_TRIALS = 10
"""How many trials the report.md table lists (trials.csv has them all)."""


def _save(figure, directory, name):
    os.makedirs(os.path.join(directory, PLOT_DIR), exist_ok=True)
    path = os.path.join(PLOT_DIR, name)
    FigureCanvasAgg(figure)
    figure.savefig(os.path.join(directory, path), dpi=100, bbox_inches="tight")
    return path


def _completed(report):
    return [r for r in report["trials"] if r["status"] == "completed"]


def objective_plot(report):
    """The objective of each completed trial against its number (failed
    trials marked on the axis), and the best so far."""
    direction = report["objective"]["direction"]
    figure = Figure(figsize=(7, 3.8))
    ax = figure.add_subplot()
    numbers, values, best, running = [], [], [], None
    for number, record in enumerate(report["trials"], start=1):
        if record["status"] != "completed":
            continue
        value = record["objective"]
        numbers.append(number)
        values.append(value)
        if running is None or direction * value > direction * running:
            running = value
        best.append(running)
    ax.plot(numbers, values, "o", color="tab:blue", label="trial")
    ax.step(numbers, best, where="post", color="tab:orange", label="best so far")
    failed = [n for n, r in enumerate(report["trials"], start=1)
              if r["status"] != "completed"]
    if failed and values:
        ax.plot(failed, [min(values)] * len(failed), "x", color="tab:red",
                label="failed")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.set_title(report["objective"]["description"], fontsize=9)
    ax.legend()
    return figure


def _label(value):
    return value if isinstance(value, str) else json.dumps(value)


def _axis_values(values, entry):
    """Numbers to plot a key's values at, and tick labels for choices (in the
    order `tune.space` lists them, `entry`)."""
    if not isinstance(entry, list):
        return [float(v) for v in values], None
    # By equality, not by label: KerasTuner records the choice 1 of
    # `[1, 2.5, 4]` as 1.0, and 1 == 1.0 (as [1, 2] == [1.0, 2.0]).
    positions = [next(i for i, choice in enumerate(entry) if choice == v)
                 for v in values]
    return positions, [_label(choice) for choice in entry]


def parameters_plot(report):
    """One panel per searched key: the objective against its value."""
    keys = list(report["space"])
    completed = _completed(report)
    columns = min(3, len(keys))
    rows = int(np.ceil(len(keys) / columns))
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows))
    for index, key in enumerate(keys):
        ax = figure.add_subplot(rows, columns, index + 1)
        used = [r for r in completed if key in r["values"]]
        if used:
            entry = report["space"][key]
            positions, labels = _axis_values([r["values"][key] for r in used],
                                             entry)
            ax.plot(positions, [r["objective"] for r in used], "o", alpha=0.8)
            if labels is not None:
                ax.set_xticks(range(len(labels)), labels, rotation=20,
                              fontsize=8)
            elif entry.get("log"):
                # Four labelled ticks over the range (matplotlib's own labels
                # of a short log range are one power of ten, or overlap).
                ax.set_xscale("log")
                ax.minorticks_off()
                ticks = np.geomspace(entry["min"], entry["max"], 4)
                ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks], fontsize=8)
        ax.set_title(key, fontsize=9)
        ax.set_ylabel("objective")
    figure.tight_layout()
    return figure


def draw_plots(report, directory):
    """Draws the plots into `directory/plots/`; returns `{name: path}`
    relative to `directory`."""
    return {"objective": _save(objective_plot(report), directory, "objective.png"),
            "parameters": _save(parameters_plot(report), directory,
                                "parameters.png")}


def _cell(value):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"`{json.dumps(value)}`" if isinstance(value, list) else str(value)


def render_markdown(report):
    """report.md: a summary, the best trial, the top trials, the plots."""
    best = report["best"]
    trials = report["trials"]
    completed = _completed(report)
    failed = len(trials) - len(completed)
    direction = report["objective"]["direction"]
    lines = [f"# Tuning: {report['name']}", "",
             f"{len(trials)} trials of {report['budget']} ({report['algorithm']}, "
             f"seed {report['seed']}; {report['executions_per_trial']} model(s) "
             f"per trial); {len(completed)} completed, {failed} failed. "
             f"Objective: {report['objective']['description']}. Training time "
             f"of the trials: {report['seconds'] / 60:.1f} minutes.", "",
             f"**Best trial: {best['trial']}**, objective "
             f"{best['objective']:.4f}. Its config: `best.yaml` (`kmtl train "
             f"best.yaml`); it was chosen on the validation split, so its test "
             f"score is an honest estimate.", "",
             "| key | best value |", "|---|---|"]
    lines += [f"| `{key}` | {_cell(value)} |" for key, value in best["values"].items()]
    baselines = report.get("baselines")
    if baselines:
        lines += ["", f"Single-task baselines (validation, mean over seeds "
                  f"{baselines['seeds']}): " + "; ".join(
                      f"{task} " + ", ".join(f"{m} {v:.4f}" for m, v in values.items())
                      for task, values in baselines["metrics"].items()) + "."]
    keys = list(report["space"])
    ranked = sorted(completed, key=lambda r: -direction * r["objective"])
    lines += ["", f"## Top {min(TOP_TRIALS, len(ranked))} trials", "",
              "| trial | objective | " + " | ".join(f"`{k}`" for k in keys)
              + " | seconds |", "|---" * (len(keys) + 3) + "|"]
    for record in ranked[:TOP_TRIALS]:
        lines.append(f"| {record['trial']} | {record['objective']:.4f} | "
                     + " | ".join(_cell(record["values"].get(k)) for k in keys)
                     + f" | {record['seconds']:.1f} |")
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- {r['trial']}: {r.get('message') or r['status']}".splitlines()[0]
                  for r in trials if r["status"] != "completed"]
    return "\n".join(lines + plot_links(report))


def write_tuning_report(report, directory):
    """Draws the plots and writes report.json and report.md into `directory`
    (adds `report["plots"]`).

    Returns:
        `(json_path, markdown_path)`.
    """
    return write_report_files(report, directory, draw_plots, render_markdown)
