"""The report of a `kmtl consolidate` run: report.json, report.md and plots.

`write_consolidation_report(report, directory)` takes the report dict that
`kmtl.runs.consolidation` builds and writes, in `directory`:

- `report.json`: the config, the input and output tables, and per task and
  round the counts (scored: the given labels, not those already the model's;
  pseudo: labels already the model's; flagged, relabelled, dropped, filled,
  missing, pseudo-label candidates), the out-of-fold score of the predictions against
  the given labels, the confusion matrix of given against suggested labels,
  the label-quality histogram and, with `compare_detectors`, how the
  multi-task and single-task detections agree; strict JSON;
- `plots/label_quality_<task>.png` (histogram of the label-quality scores,
  flagged and not flagged), `plots/changes.png` (what changed per task),
  `plots/confusion_<task>.png` (given against suggested, binary and
  multiclass tasks);
- `report.md`: a summary, the tables and the plots.
"""

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kmtl.naming import ascii_name
from kmtl.plotting.heatmap import plot_heatmap
from kmtl.runs.report import PLOT_DIR
from kmtl.runs.report import plot_links
from kmtl.runs.report import write_report_files

__all__ = ["render_markdown", "write_consolidation_report"]

COUNTS = ("flagged", "relabelled", "dropped", "filled")


def _save(figure, directory, name):
    os.makedirs(os.path.join(directory, PLOT_DIR), exist_ok=True)
    path = os.path.join(PLOT_DIR, name)
    FigureCanvasAgg(figure)
    figure.savefig(os.path.join(directory, path), dpi=100, bbox_inches="tight")
    return path


def _quality_plot(task, histogram):
    figure = Figure(figsize=(6, 3.5))
    ax = figure.add_subplot()
    edges = np.asarray(histogram["edges"])
    width = np.diff(edges)
    ax.bar(edges[:-1], histogram["not_flagged"], width=width, align="edge",
           label="not flagged", color="tab:blue", alpha=0.7)
    ax.bar(edges[:-1], histogram["flagged"], width=width, align="edge",
           bottom=histogram["not_flagged"], label="flagged", color="tab:red",
           alpha=0.8)
    ax.set_xlabel("label quality (out-of-fold)")
    ax.set_ylabel("labels")
    ax.set_yscale("symlog")
    ax.set_title(f"{task}: label quality")
    ax.legend()
    return figure


def _changes_plot(totals):
    figure = Figure(figsize=(1.5 + 1.6 * len(totals), 3.5))
    ax = figure.add_subplot()
    names = list(totals)
    x = np.arange(len(names))
    width = 0.8 / len(COUNTS)
    for i, kind in enumerate(COUNTS):
        ax.bar(x + i * width, [totals[n][kind] for n in names], width, label=kind)
    ax.set_xticks(x + width * (len(COUNTS) - 1) / 2, names)
    ax.set_ylabel("labels (all rounds)")
    ax.set_title("What consolidation changed")
    ax.legend()
    return figure


def draw_plots(report, directory):
    """Draws the plots into `directory/plots/`; returns `{name: path}`
    relative to `directory`."""
    plots = {}
    totals = {}
    for task, entry in report["tasks"].items():
        rounds = entry["rounds"]
        last = rounds[-1]
        stem = ascii_name(task) or "task"
        plots[f"label_quality_{task}"] = _save(
            _quality_plot(task, last["quality_histogram"]), directory,
            f"label_quality_{stem}.png")
        if last["confusion"] is not None:
            confusion = last["confusion"]
            figure = plot_heatmap(np.asarray(confusion["matrix"]),
                                  row_labels=confusion["labels"],
                                  column_labels=confusion["labels"],
                                  title=f"{task}: given (rows) against suggested",
                                  value_format=",.0f")
            plots[f"confusion_{task}"] = _save(figure, directory,
                                               f"confusion_{stem}.png")
        totals[task] = {kind: sum(r[kind] for r in rounds) for kind in COUNTS}
    plots["changes"] = _save(_changes_plot(totals), directory, "changes.png")
    return plots


def _number(value):
    return "n/a" if value is None else f"{value:.4f}"


def render_markdown(report):
    """report.md: a summary, one table of counts per round and task, the
    detector comparison, and the plots."""
    actions = ", ".join(report["actions"])
    lines = [f"# Consolidation: {report['name']}", "",
             f"Input: `{report['input'] or 'the config data set'}` "
             f"({report['rows']:,} rows). Output: `{report['output']}`.", "",
             f"Every row was scored by a `{report['detector']}` model that did not "
             f"train on it ({report['folds']}-fold cross-fitting). Actions: "
             f"{actions}.", "",
             "| round | task | scored labels | flagged | share | relabelled | dropped "
             "| missing | filled | pseudo-label candidates | out-of-fold score |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, entry in report["tasks"].items():
        for number, r in enumerate(entry["rounds"], start=1):
            share = r["flagged"] / r["scored"] if r["scored"] else 0.0
            score = r["out_of_fold"]
            lines.append(
                f"| {number} | {task} | {r['scored']:,} | {r['flagged']:,} | "
                f"{share:.2%} | {r['relabelled']:,} | {r['dropped']:,} | "
                f"{r['missing']:,} | {r['filled']:,} | "
                f"{r['pseudo_label_candidates']:,} | {score['metric']} "
                f"{_number(score[report['detector']])} |")
    other = report.get("compared_detector")
    if other:
        detector = report["detector"]
        lines += ["", f"## `{detector}` against `{other}` detection (round 1)", "",
                  "The out-of-fold score says which models predict the given "
                  "labels better: the better witness of each label.", "",
                  f"| task | score | {detector} | {other} | flagged by {detector} | "
                  f"flagged by {other} | both |", "|---|---|---|---|---|---|---|"]
        for task, entry in report["tasks"].items():
            r = entry["rounds"][0]
            score, agreement = r["out_of_fold"], r["agreement"]
            lines.append(
                f"| {task} | {score['metric']} | {_number(score[detector])} | "
                f"{_number(score[other])} | {agreement['flagged']:,} | "
                f"{agreement['flagged_other']:,} | {agreement['both']:,} |")
    return "\n".join(lines + plot_links(report))


def write_consolidation_report(report, directory):
    """Draws the plots and writes report.json and report.md into `directory`
    (adds `report["plots"]`).

    Returns:
        `(json_path, markdown_path)`.
    """
    return write_report_files(report, directory, draw_plots, render_markdown)

