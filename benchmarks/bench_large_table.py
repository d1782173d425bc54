"""Training from a table larger than memory: rows per second and peak memory of
the streaming path (`data.streaming`) on generated Parquet tables of 10
million and 1 million rows, and the in-memory path's peak memory at 1 million
rows as the reference.

The tables (8 numeric and 3 categorical features of 10, 100 and 1,000
categories; a binary task with 5% missing labels and a regression task with
20% missing) are written row group by row group into a temporary folder,
never held whole. Each measure runs in a fresh process (`python -m
benchmarks.bench_large_table --child MODE PATH`) that trains one epoch
through `kmtl.runs.training` (`prepare_run`, `run_model`: held-out rows by
the hash rule, 1% validation and 1% test, evaluated at the end), and reports
the training part's rows per second and its peak resident memory (`VmHWM`).
Memory is bounded when the 10M/1M ratio of peak memory stays near 1.

Usage: python -m benchmarks.bench_large_table [--rows N] (default 10,000,000;
the small table has N/10 rows). Writes benchmarks/results/large_table.json
(for the default size only).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import ROOT

DEFAULT_ROWS = 10_000_000
ROW_GROUP = 500_000
NUMERIC = 8
CATEGORIES = {"site": 10, "device": 100, "city": 1_000}
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def write_table(path, rows, seed=0):
    """Writes a Parquet file of `rows` generated rows, one row group of at
    most `ROW_GROUP` rows at a time. Returns the file's size in bytes."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=NUMERIC)
    effects = {name: rng.normal(size=n) for name, n in CATEGORIES.items()}
    writer = None
    for start in range(0, rows, ROW_GROUP):
        n = min(ROW_GROUP, rows - start)
        x = rng.normal(size=(n, NUMERIC)).astype("float32")
        columns = {f"x{i}": x[:, i] for i in range(NUMERIC)}
        score = x @ weights
        for name, count in CATEGORIES.items():
            codes = rng.integers(0, count, n)
            score += effects[name][codes]
            names = pa.array([f"{name}_{i}" for i in range(count)])
            columns[name] = pa.DictionaryArray.from_arrays(
                pa.array(codes.astype("int32")), names).cast(pa.string())
        click = (rng.random(n) < 1 / (1 + np.exp(-score / 3))).astype("float64")
        click[rng.random(n) < 0.05] = np.nan
        value = score + rng.normal(size=n)
        value[rng.random(n) < 0.2] = np.nan
        columns.update(click=click, value=value)
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return os.path.getsize(path)


def config(path, streaming):
    """The run's config: a shared-bottom model, one epoch, batches of 4096."""
    return {
        "name": "large_table",
        "data": {"train": path, "split": {"method": "random", "validation": 0.01,
                                          "test": 0.01},
                 "streaming": streaming},
        "tasks": [{"name": "click", "type": "binary", "target": "click"},
                  {"name": "value", "type": "regression", "target": "value"}],
        "model": {"architecture": "shared_bottom", "options": {"units": [64]},
                  "tower_units": [16]},
        "training": {"epochs": 1, "batch_size": 4096, "learning_rate": 0.001,
                     "early_stopping_patience": 1, "verbose": 0},
        "export": {"enabled": False},
    }


def _vm(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(mode, path):
    """One measure in this (fresh) process: prints one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from benchmarks.common import EpochTimer
    from kmtl.runs.training import prepare_run
    from kmtl.runs.training import run_model

    streaming = ({"chunk_rows": 65536, "fit_rows": 100_000,
                  "shuffle_buffer": 262_144} if mode == "streaming" else None)
    start_rss = _vm("VmRSS")
    start = time.perf_counter()
    run_config, data = prepare_run(config(path, streaming))
    prepared = time.perf_counter() - start
    timer = EpochTimer()
    start = time.perf_counter()
    result = run_model(run_config, data, callbacks=[timer])
    print(json.dumps({
        "mode": mode,
        "train_rows": len(data.train),
        "prepare_s": prepared,
        "epoch_train_s": timer.seconds[0],
        "rows_per_s": len(data.train) / timer.seconds[0],
        "run_model_s": time.perf_counter() - start,
        "validation_click_auc": result.metrics["validation"]["click"].get("auc"),
        "rss_after_imports_mb": start_rss,
        "peak_rss_mb": _vm("VmHWM"),
    }))


def _measure(mode, path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_large_table",
                           "--child", mode, path], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{mode} on {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(rows=DEFAULT_ROWS):
    """Generates the two tables, measures, returns the result dict."""
    small_rows = rows // 10
    result = {"rows": {"large": rows, "small": small_rows}}
    with tempfile.TemporaryDirectory() as folder:
        tables = {}
        for name, n in (("large", rows), ("small", small_rows)):
            path = os.path.join(folder, f"{name}.parquet")
            start = time.perf_counter()
            size = write_table(path, n)
            result[f"{name}_file_mb"] = size / 2**20
            result[f"{name}_write_s"] = time.perf_counter() - start
            tables[name] = path
        result["streaming_large"] = _measure("streaming", tables["large"])
        result["streaming_small"] = _measure("streaming", tables["small"])
        result["in_memory_small"] = _measure("in_memory", tables["small"])
    large, small = result["streaming_large"], result["streaming_small"]
    result["peak_rss_ratio_large_over_small"] = (large["peak_rss_mb"]
                                                 / small["peak_rss_mb"])
    result["streaming_over_in_memory_peak_rss_small"] = (
        small["peak_rss_mb"] / result["in_memory_small"]["peak_rss_mb"])
    result["target"] = {"peak_rss_ratio_large_over_small": "<= 1.2 (bounded)"}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help="rows of the large table (the small one has a "
                        "tenth); results are written only for the default")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "machine": platform.machine()}
    result = {"benchmark": "large_table", "machine": machine, **run(args.rows)}
    print(json.dumps(result, indent=2))
    if args.rows == DEFAULT_ROWS:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "large_table.json"), "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
