"""Runs every benchmark, prints a table and writes benchmarks/results/<name>.json.

Usage: python benchmarks/run.py [pipeline] [train_step] [census_epoch]
    [numeric_table] [weighting] [text_pipeline]
Needs the Census-Income files in ../shared/data/census-income and, for
text_pipeline, the reviews in ../shared/data/womens-clothing-reviews (or both
in $KMTL_DATA_DIR).
"""

import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import bench_census_epoch  # noqa: E402
from benchmarks import bench_large_table  # noqa: E402
from benchmarks import bench_numeric_table  # noqa: E402
from benchmarks import bench_pipeline  # noqa: E402
from benchmarks import bench_text_pipeline  # noqa: E402
from benchmarks import bench_train_step  # noqa: E402
from benchmarks import bench_weighting  # noqa: E402
from benchmarks.tables import write_tables  # noqa: E402

BENCHMARKS = {
    "pipeline": bench_pipeline.run,
    "train_step": bench_train_step.run,
    "census_epoch": bench_census_epoch.run,
    "numeric_table": bench_numeric_table.run,
    "weighting": bench_weighting.run,
    "text_pipeline": bench_text_pipeline.run,
    "large_table": bench_large_table.run,
}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _flat(result, prefix=""):
    """(dotted key, value) for every float in a nested result."""
    for key, value in result.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        elif isinstance(value, float):
            yield f"{prefix}{key}", value


def main(names):
    os.makedirs(RESULTS, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "machine": platform.machine()}
    rows, results = [], {}
    for name in names or list(BENCHMARKS):
        result = {"benchmark": name, "machine": machine, **BENCHMARKS[name]()}
        with open(os.path.join(RESULTS, f"{name}.json"), "w") as handle:
            json.dump(result, handle, indent=2)
        results[name] = result
        rows.extend((name, key, value) for key, value in _flat(result))
    write_tables(results)  # the docs' tables (docs/snippets/) from this run
    width = max(len(r[1]) for r in rows)
    print(f"{'benchmark':<14} {'measure':<{width}} value")
    for name, key, value in rows:
        print(f"{name:<14} {key:<{width}} {value:,.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
