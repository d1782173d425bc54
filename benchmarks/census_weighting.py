"""Every weighting method with MMoE on the full Census-Income benchmark.

Usage: python benchmarks/census_weighting.py [METHOD ...]
Trains `examples/census_income.yaml` once per method (same seed, same split,
at most 10 epochs with early stopping on validation loss) and writes
benchmarks/results/census_weighting.json and a Markdown table of test ROC-AUC.
Not part of `make bench`: it takes about a minute and a half per method.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import CENSUS_CONFIG  # noqa: E402
from benchmarks.common import census_dir  # noqa: E402
from kmtl import weighting  # noqa: E402
from kmtl.config import load_config  # noqa: E402
from kmtl.training import train  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(methods):
    methods = methods or [m for m in weighting.list_weightings()
                          if m not in ("static", "uw")]
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "census_weighting.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    for method in methods:
        config = load_config(CENSUS_CONFIG)
        config["training"]["weighting"] = method
        config["training"]["verbose"] = 0
        config["export"]["enabled"] = False
        start = time.perf_counter()
        run = train(config, data_dir=census_dir(), output_dir="/tmp/kmtl-census-runs",
                    log=lambda *_: None)
        test = run["metrics"]["test"]
        results[method] = {
            "income_auc": test["income"]["auc"],
            "never_married_auc": test["never_married"]["auc"],
            "epochs": len(run["history"]["loss"]),
            "seconds": time.perf_counter() - start,
        }
        print(method, results[method], flush=True)
        with open(path, "w") as handle:
            json.dump(results, handle, indent=2)
    print("| weighting | income AUC | never_married AUC | epochs | seconds |")
    print("|---|---|---|---|---|")
    for method, r in results.items():
        print(f"| {method} | {r['income_auc']:.4f} | {r['never_married_auc']:.4f} | "
              f"{r['epochs']} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
