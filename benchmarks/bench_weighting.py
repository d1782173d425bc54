"""Training-step time of every weighting method divided by equal weighting's.

Shapes of the comparison in the issue (and of LibMTL's measurement): 64 inputs,
a shared bottom of (256, 256), one tower of (256, 64) and a linear head per task,
MSE, batch 1024, Adam; 3 and 6 regression tasks on synthetic data. The same model
and the same cached batches for every method; each method's median epoch time is
divided by EW's, measured in the same run.
"""

import keras
import numpy as np
import pandas as pd

from benchmarks.common import EpochTimer
from benchmarks.common import median
from kmtl import Task
from kmtl import build_model
from kmtl import weighting as weighting_module
from kmtl.data import make_dataset
from kmtl.features import Feature

STEPS = 20
EPOCHS = 3
INPUTS = 64


def _data(num_tasks, rows=STEPS * 1024, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, INPUTS)).astype("float32")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(INPUTS)])
    for t in range(num_tasks):
        frame[f"y{t}"] = x @ rng.normal(size=INPUTS) + rng.normal(size=rows)
    tasks = [Task(f"y{t}", "regression") for t in range(num_tasks)]
    for task in tasks:
        task.fit(frame)
    features = [Feature(f"x{i}", "numeric").fit(frame) for i in range(INPUTS)]
    data = make_dataset(frame, features, tasks, 1024).cache()
    for _ in data:
        pass
    return features, tasks, data


def _seconds_per_step(features, tasks, data, method):
    keras.utils.set_random_seed(0)
    model = build_model(features, tasks, "shared_bottom", units=(256, 256),
                        tower_units=(256, 64))
    model.compile(optimizer="adam", weighting=method)
    model.fit(data, epochs=1, verbose=0, shuffle=False)  # tracing
    timer = EpochTimer()
    model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[timer])
    return median(timer.seconds) / STEPS


def run():
    methods = [m for m in weighting_module.list_weightings() if m not in ("ew",)]
    result = {"steps_per_epoch": STEPS, "ms_per_step": {}, "ratio_to_ew": {}}
    for num_tasks in (3, 6):
        features, tasks, data = _data(num_tasks)
        reference = _seconds_per_step(features, tasks, data, "ew")
        key = f"{num_tasks}_tasks"
        result["ms_per_step"][key] = {"ew": reference * 1000}
        result["ratio_to_ew"][key] = {}
        for method in methods:
            seconds = _seconds_per_step(features, tasks, data, method)
            result["ms_per_step"][key][method] = seconds * 1000
            result["ratio_to_ew"][key][method] = seconds / reference
    result["targets"] = {"loss weighting": "<= 1.05", "gradient methods (3 tasks)":
                         "<= 1.8", "nash_mtl": "<= 3.0"}
    return result
