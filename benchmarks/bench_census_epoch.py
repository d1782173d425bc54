"""(c) Seconds per Census-Income epoch for MMoE with DeepCTR's default sizes,
and peak memory.

kmtl: `examples/census_income.yaml` (3 experts of (256, 128), towers (64,),
embeddings of 4, batch 1024; the table encoded once, the model trained on the
encoded blocks).

Reference, measured in the same run: DeepCTR's own `MMOE` with its defaults
(`benchmarks/deepctr_mmoe.py`, run in `.venv-deepctr`, which `make bench` creates:
DeepCTR needs Keras 2). Both time the training part of each epoch; the median of
the epochs after the first is compared. Each runs in its own process (kmtl:
`python -m benchmarks.bench_census_epoch --kmtl`), which also validates every
epoch and predicts the test half, as DeepCTR's does, and reports its peak
resident memory (`VmHWM`).
"""

import json
import os
import subprocess
import sys

from benchmarks.common import ROOT
from benchmarks.common import EpochTimer
from benchmarks.common import census
from benchmarks.common import census_dir
from benchmarks.common import median
from benchmarks.common import peak_rss_mb
from kmtl.data import make_dataset
from kmtl.runs.training import model_from_config

EPOCHS = 4
DEEPCTR_PYTHON = os.path.join(ROOT, ".venv-deepctr", "bin", "python")


def _deepctr():
    if not os.path.exists(DEEPCTR_PYTHON):
        return None
    script = os.path.join(ROOT, "benchmarks", "deepctr_mmoe.py")
    done = subprocess.run([DEEPCTR_PYTHON, script, census_dir(), str(EPOCHS)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _kmtl_process(jit_compile):
    """The kmtl side, in this process: prints one JSON line."""
    config, train, validation, features, tasks = census()
    model = model_from_config(config, features, tasks)
    model.compile(optimizer="adam", jit_compile=jit_compile)
    data = make_dataset(train, features, tasks, 1024, shuffle=True, seed=0)
    held_out = make_dataset(validation, features, tasks, 4096)
    timer = EpochTimer()
    model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[timer],
              validation_data=held_out)
    model.predict(make_dataset(validation, features, None, 4096), verbose=0)
    print(json.dumps({
        "epoch_seconds": timer.seconds,
        "peak_rss_mb": peak_rss_mb()}))


def _kmtl(jit_compile=False):
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_census_epoch",
                           "--kmtl-xla" if jit_compile else "--kmtl"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run():
    kmtl = _kmtl()
    xla = _kmtl(jit_compile=True)
    kmtl_s = median(kmtl["epoch_seconds"][1:])
    xla_s = median(xla["epoch_seconds"][1:])
    result = {"kmtl_s_per_epoch": kmtl_s, "kmtl_epoch_seconds": kmtl["epoch_seconds"],
              "kmtl_peak_rss_mb": kmtl["peak_rss_mb"],
              "kmtl_xla_s_per_epoch": xla_s,
              "kmtl_xla_epoch_seconds": xla["epoch_seconds"],
              "target": {"ratio": "<= 0.8", "peak_rss": "<= DeepCTR's"}}
    deepctr = _deepctr()
    if deepctr is None:
        result["deepctr"] = "not measured: .venv-deepctr missing (make bench makes it)"
        return result
    result.update({
        "deepctr_s_per_epoch": deepctr["s_per_epoch_after_first"],
        "ratio": kmtl_s / deepctr["s_per_epoch_after_first"],
        "xla_ratio": xla_s / deepctr["s_per_epoch_after_first"],
        "deepctr_peak_rss_mb": deepctr["peak_rss_mb"],
        "peak_rss_ratio": kmtl["peak_rss_mb"] / deepctr["peak_rss_mb"],
        "deepctr_epoch_seconds": deepctr["epoch_seconds"],
        "deepctr_test_auc": deepctr["test_auc"],
        "deepctr_versions": deepctr["versions"],
    })
    return result


if __name__ == "__main__" and sys.argv[1:2] in (["--kmtl"], ["--kmtl-xla"]):
    _kmtl_process(jit_compile=sys.argv[1] == "--kmtl-xla")
