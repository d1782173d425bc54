"""(b) The `MultiTaskModel` training step against stock Keras `fit`.

Both models share the very same layers (the census MMoE graph) and train on the
same encoded blocks (`make_dataset`'s default). The stock one is a plain
`keras.Model` from the model's encoded inputs to its outputs, compiled with the same
per-output losses, loss weights and weighted metrics, and trained by Keras's own
`train_step`. Same batches (sample weights included); runs alternate A/B and the
ratio of the medians is reported.
"""

import warnings

import keras

from benchmarks.common import EpochTimer
from benchmarks.common import census
from benchmarks.common import median
from kmtl.data import make_dataset
from kmtl.runs.training import model_from_config

STEPS = 60
ROUNDS = 4


def _stock_model(model):
    """Stock Keras on the same encoded blocks and the same layers."""
    outputs = dict(zip(model.output_names, model.outputs))
    with warnings.catch_warnings():
        # The blocks' keys (`encoded:numeric`) are not the tensors' names.
        warnings.simplefilter("ignore")
        stock = keras.Model(inputs=model.encoded_inputs, outputs=outputs,
                            name="stock")
    stock.compile(
        optimizer="adam",
        loss={t.name: t.build_loss() for t in model.tasks},
        loss_weights={t.name: t.loss_weight for t in model.tasks},
        weighted_metrics={t.name: t.build_metrics() for t in model.tasks},
    )
    return stock


def run():
    config, train, _, features, tasks = census()
    model = model_from_config(config, features, tasks)
    model.compile(optimizer="adam")
    stock = _stock_model(model)
    batches = make_dataset(train, features, tasks, 1024, shuffle=True, seed=0)
    batches = batches.take(STEPS).cache()
    for _ in batches:
        pass
    seconds = {"kmtl": [], "stock": []}
    for candidate in (model, stock):  # warm-up: tracing
        candidate.fit(batches, epochs=1, verbose=0, shuffle=False)
    for _ in range(ROUNDS):
        for name, candidate in (("kmtl", model), ("stock", stock)):
            timer = EpochTimer()
            candidate.fit(batches, epochs=2, verbose=0, shuffle=False,
                          callbacks=[timer])
            seconds[name].extend(timer.seconds)
    kmtl_ms = median(seconds["kmtl"]) / STEPS * 1000
    stock_ms = median(seconds["stock"]) / STEPS * 1000
    return {
        "kmtl_ms_per_step": kmtl_ms,
        "stock_keras_ms_per_step": stock_ms,
        "ratio": kmtl_ms / stock_ms,
        "steps_per_epoch": STEPS,
        "epochs_timed_each": len(seconds["kmtl"]),
        "target": {"ratio": "<= 1.02"},
    }
