"""Class weights and the focal loss on Census-Income's rare income task.

Usage:
    nice -n 10 python benchmarks/imbalance.py [--seeds 0 1 2] [--epochs N]

Trains `examples/census_income.yaml` (MMoE, income 6.2% positive and
never_married 43.4%; export off, progress bar off) three ways, changing only
the income task:

- `plain`: binary cross-entropy;
- `balanced`: `class_weight: balanced` (scikit-learn's `n / (2 n_c)` on the
  training labels: about 0.53 for a negative, 8.05 for a positive);
- `focal`: `loss: {name: focal, gamma: 2.0, alpha: 0.25}` (Lin et al., ICCV
  2017, arXiv:1708.02002, their best setting).

Each run is scored on the test half of the census test file (the data
README's protocol) with scikit-learn: income ROC-AUC (`roc_auc_score`),
PR-AUC (`average_precision_score`), Brier score (`brier_score_loss`) and the
mean predicted probability (against the test positive rate), and never_married
ROC-AUC. Writes a Markdown table (mean over seeds, each seed in brackets) to
benchmarks/results/imbalance.md after each run; run directories go to a
temporary folder. About 45 seconds per run (10 epochs) on 2 cores.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402
from sklearn.metrics import brier_score_loss  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks.common import CENSUS_CONFIG  # noqa: E402
from benchmarks.common import ROOT  # noqa: E402
from benchmarks.common import census_dir  # noqa: E402
from kmtl.data import make_dataset  # noqa: E402
from kmtl.runs.config import parse_config  # noqa: E402
from kmtl.runs.data import load_splits  # noqa: E402
from kmtl.runs.training import train  # noqa: E402

RESULT = os.path.join(ROOT, "benchmarks", "results", "imbalance.md")

VARIANTS = {
    "plain": {},
    "balanced": {"class_weight": "balanced"},
    "focal": {"loss": {"name": "focal", "gamma": 2.0, "alpha": 0.25}},
}
"""The income task's extra keys in each variant."""

MEASURES = {
    "income_roc_auc": "income ROC-AUC",
    "income_pr_auc": "income PR-AUC",
    "income_brier": "income Brier",
    "income_mean_p": "income mean p",
    "never_married_roc_auc": "never_married ROC-AUC",
    "epochs": "epochs",
    "minutes": "minutes",
}


def variant_config(raw, variant, seed, epochs):
    """The example config with the income task of `variant`, `seed`."""
    tasks = [dict(task, **VARIANTS[variant]) if task["name"] == "income"
             else dict(task) for task in raw["tasks"]]
    training = {**raw["training"], "seed": seed, "verbose": 0}
    if epochs is not None:
        training["epochs"] = epochs
    return parse_config({**raw, "name": f"imbalance_{variant}_{seed}",
                         "tasks": tasks, "training": training,
                         "export": {"enabled": False}})


def scores(predicted, test):
    """The test measures from the model's predictions on `test`."""
    income = test["income"].to_numpy()
    p = predicted["income"][:, 0]
    return {
        "income_roc_auc": float(roc_auc_score(income, p)),
        "income_pr_auc": float(average_precision_score(income, p)),
        "income_brier": float(brier_score_loss(income, p)),
        "income_mean_p": float(p.mean()),
        "never_married_roc_auc": float(roc_auc_score(
            test["never_married"], predicted["never_married"][:, 0])),
    }


def run(raw, variant, seed, epochs, test, folder):
    config = variant_config(raw, variant, seed, epochs)
    start = time.perf_counter()
    result = train(config, data_dir=census_dir(), output_dir=folder,
                   log=lambda line: None)
    minutes = (time.perf_counter() - start) / 60
    model = keras.saving.load_model(os.path.join(result["run_dir"], "model.keras"))
    predicted = model.predict(make_dataset(test, model.features, batch_size=4096),
                              verbose=0)
    return {**scores(predicted, test), "minutes": minutes,
            "epochs": len(result["history"]["loss"])}


def table(runs, seeds, test, command):
    """The Markdown of the results so far."""
    lines = [
        "# Class weights and focal loss on Census-Income income",
        "",
        f"Command: `{command}`",
        "",
        f"`examples/census_income.yaml` (MMoE), only the income task changed; "
        f"test half of the census test file ({len(test):,} rows, income "
        f"{test['income'].mean():.2%} positive); seeds {seeds}. scikit-learn "
        f"measures on the test predictions: ROC-AUC `roc_auc_score`, PR-AUC "
        f"`average_precision_score`, Brier `brier_score_loss` (lower is "
        f"better), mean p the mean predicted income probability. Mean over "
        f"seeds, each seed in brackets.",
        "",
        "| variant (income task) | " + " | ".join(MEASURES.values()) + " |",
        "|---" * (len(MEASURES) + 1) + "|",
    ]
    for variant, results in runs.items():
        if not results:
            continue
        cells = []
        for key in MEASURES:
            values = [r[key] for r in results]
            if key == "epochs":
                cells.append(", ".join(str(v) for v in values))
                continue
            cell = f"{np.mean(values):.{1 if key == 'minutes' else 4}f}"
            if len(values) > 1 and key != "minutes":
                cell += " (" + ", ".join(f"{v:.4f}" for v in values) + ")"
            cells.append(cell)
        label = f"{variant}: " + (yaml.safe_dump(
            VARIANTS[variant], default_flow_style=True).strip() if
            VARIANTS[variant] else "binary cross-entropy")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="override training.epochs (default: the config's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        choices=list(VARIANTS))
    args = parser.parse_args()
    command = "nice -n 10 .venv/bin/python benchmarks/imbalance.py " + " ".join(
        sys.argv[1:])
    with open(CENSUS_CONFIG, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    _, _, test = load_splits(parse_config(raw), census_dir())
    runs = {variant: [] for variant in args.variants}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for variant in args.variants:
                runs[variant].append(run(raw, variant, seed, args.epochs, test,
                                         folder))
                print(f"seed {seed} {variant}: {runs[variant][-1]}", flush=True)
                with open(RESULT, "w", encoding="utf-8") as handle:
                    handle.write(table(runs, args.seeds, test, command.strip()))
    print(table(runs, args.seeds, test, command.strip()))


if __name__ == "__main__":
    main()
