"""Census-Income tables: every architecture, or every weighting method, on the
full benchmark.

Usage:
    python benchmarks/census_table.py architectures [VARIANT ...]
    python benchmarks/census_table.py weightings [METHOD ...]

Each row trains `examples/census_income.yaml` (the protocol of the shared data
README: all 199,523 training rows; validation and test are the halves of the test
file) with one change - the architecture (with the options below) or the
weighting method - on the same split and seed, at most 10 epochs with early
stopping on the validation loss. Writes benchmarks/results/census_<table>.json
(rows accumulate across invocations) and prints a Markdown table of test ROC-AUC,
parameters and seconds per epoch. Not part of `make bench`: a row takes one to
three minutes on 2 cores.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import CENSUS_CONFIG  # noqa: E402
from benchmarks.common import EpochTimer  # noqa: E402
from benchmarks.common import census_dir  # noqa: E402
from benchmarks.common import median  # noqa: E402
from kmtl import weighting  # noqa: E402
from kmtl.runs.config import read_config  # noqa: E402
from kmtl.runs.data import prepare_data  # noqa: E402
from kmtl.runs.training import run_model  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# Variant -> (architecture, options). Sizes follow the census example (experts and
# towers of (256, 128)); the rest are each layer's paper defaults.
ARCHITECTURES = {
    "shared_bottom": ("shared_bottom", {"units": [256, 128]}),
    "soft_sharing": ("soft_sharing", {"units": [256, 128]}),
    "cross_stitch": ("cross_stitch", {"units": [256, 128]}),
    "mmoe": ("mmoe", {"num_experts": 3, "expert_units": [256, 128]}),
    "mmoe_dselect_k": ("mmoe", {"num_experts": 4, "expert_units": [256, 128],
                                "gate": "dselect_k", "top_k": 2}),
    "cgc": ("cgc", {"num_task_experts": 1, "num_shared_experts": 1,
                    "expert_units": [256, 128]}),
    "ple": ("ple", {"num_levels": 2, "num_task_experts": 1,
                    "num_shared_experts": 1, "expert_units": [256, 128]}),
    "mtan": ("mtan", {"units": [256, 128]}),
}


def _configure(config, table, row):
    if table == "architectures":
        architecture, options = ARCHITECTURES[row]
        changes = {"model.architecture": architecture, "model.options": options}
    else:
        changes = {"training.weighting": row}
    return config.replace({**changes, "training.verbose": 0})


def main(table, rows):
    if table not in ("architectures", "weightings"):
        raise SystemExit(__doc__)
    if not rows:
        rows = (list(ARCHITECTURES) if table == "architectures" else
                [m for m in weighting.list_weightings() if m not in ("static", "uw")])
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"census_{table}.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    data = prepare_data(read_config(CENSUS_CONFIG), census_dir())
    for row in rows:
        config = _configure(read_config(CENSUS_CONFIG), table, row)
        timer = EpochTimer()
        run = run_model(config, data, callbacks=[timer])
        test = run.metrics["test"]
        results[row] = {
            "income_auc": test["income"]["auc"],
            "never_married_auc": test["never_married"]["auc"],
            "parameters": run.parameters,
            "epochs": len(run.history["loss"]),
            "seconds_per_epoch": median(timer.seconds),
            "seconds": run.seconds,
        }
        print(row, results[row], flush=True)
        with open(path, "w") as handle:
            json.dump(results, handle, indent=2)
    print(f"| {table[:-1]} | income AUC | never_married AUC | parameters | "
          f"epochs | s/epoch |")
    print("|---|---|---|---|---|---|")
    for row, r in results.items():
        print(f"| {row} | {r['income_auc']:.4f} | {r['never_married_auc']:.4f} | "
              f"{r['parameters']:,} | {r['epochs']} | {r['seconds_per_epoch']:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
