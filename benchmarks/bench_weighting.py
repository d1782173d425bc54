"""Training-step time of every weighting method divided by equal weighting's.

Shapes of the comparison in the issue (and of LibMTL's measurement): 64 inputs,
a shared bottom of (256, 256), one tower of (256, 64) and a linear head per task,
MSE, batch 1024, Adam; 3 and 6 regression tasks on synthetic data. The same model
and the same cached batches for every method; methods take turns over several
rounds, and each method's fastest epoch is divided by EW's, in the same run.
"""

import keras

from benchmarks.common import epoch_seconds
from benchmarks.common import numeric_table
from kmtl import build_model
from kmtl import weighting as weighting_module

STEPS = 20
ROUNDS = 5
INPUTS = 64


def _model(features, tasks, method):
    keras.utils.set_random_seed(0)
    model = build_model(features, tasks, "shared_bottom", units=(256, 256),
                        tower_units=(256, 64))
    name, _, gradients = method.partition("+")
    model.compile(optimizer="adam", weighting=name,
                  gradients=gradients or "parameters")
    return model


def run(rounds=ROUNDS):
    # `ew` (the reference) and every registered method; `static` is the same
    # computation as `ew`, so its ratio shows the noise floor.
    methods = ["ew"] + weighting_module.list_weightings()
    # Gradient methods again with gradients of the shared representation.
    methods += [f"{m}+representation" for m in methods
                if weighting_module.get(m).gradient_based
                and weighting_module.get(m).supports_representation_gradients]
    result = {"steps_per_epoch": STEPS, "rounds": rounds, "ms_per_step": {},
              "ratio_to_ew": {}}
    for num_tasks in (3, 6):
        features, tasks, data = numeric_table(num_tasks, INPUTS, STEPS * 1024)
        models = {m: _model(features, tasks, m) for m in methods}
        for model in models.values():  # tracing
            epoch_seconds(model, data)
        # Methods take turns within each round, so a burst of load elsewhere hits
        # them alike; each keeps its fastest epoch.
        best = {m: float("inf") for m in methods}
        for _ in range(rounds):
            for method, model in models.items():
                best[method] = min(best[method], epoch_seconds(model, data))
        key = f"{num_tasks}_tasks"
        result["ms_per_step"][key] = {m: best[m] / STEPS * 1000 for m in methods}
        result["ratio_to_ew"][key] = {m: best[m] / best["ew"] for m in methods
                                      if m != "ew"}
    result["targets"] = {"loss weighting": "<= 1.05", "gradient methods (3 tasks)":
                         "<= 1.8", "with representation gradients": "<= 1.5",
                         "nash_mtl": "<= 3.0", "famo": "<= 1.05",
                         "db_mtl, fairgrad, upgrad (3 tasks)": "<= 1.5"}
    return result
