"""(c) Seconds per Census-Income epoch for MMoE with DeepCTR's default sizes.

kmtl: `examples/census_income.yaml` (3 experts of (256, 128), towers (64,),
embeddings of 4, batch 1024; raw strings in, preprocessing inside the model).

Reference, measured in the same run: DeepCTR's own `MMOE` with its defaults
(`benchmarks/deepctr_mmoe.py`, run in `.venv-deepctr`, which `make bench` creates:
DeepCTR needs Keras 2). Both time the training part of each epoch; the median of
the epochs after the first is compared.
"""

import json
import os
import subprocess

from benchmarks.common import ROOT
from benchmarks.common import EpochTimer
from benchmarks.common import census
from benchmarks.common import census_dir
from benchmarks.common import median
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


def run():
    config, train, _, features, tasks = census()
    model = model_from_config(config, features, tasks)
    model.compile(optimizer="adam")
    data = make_dataset(train, features, tasks, 1024, shuffle=True, seed=0)
    timer = EpochTimer()
    model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[timer])
    kmtl_s = median(timer.seconds[1:])
    result = {"kmtl_s_per_epoch": kmtl_s, "kmtl_epoch_seconds": timer.seconds,
              "target": {"ratio": "<= 1.0 (no slower than DeepCTR)"}}
    deepctr = _deepctr()
    if deepctr is None:
        result["deepctr"] = "not measured: .venv-deepctr missing (make bench makes it)"
        return result
    result.update({
        "deepctr_s_per_epoch": deepctr["s_per_epoch_after_first"],
        "ratio": kmtl_s / deepctr["s_per_epoch_after_first"],
        "deepctr_epoch_seconds": deepctr["epoch_seconds"],
        "deepctr_test_auc": deepctr["test_auc"],
        "deepctr_versions": deepctr["versions"],
    })
    return result
