"""(e) Text pipeline throughput over the reviews training split.

kmtl's text pipeline as training uses it: the vocabulary fitted once
(`kmtl.features.fit_features`), the frame encoded once into token ids
(`kmtl.features.encode_frame`, timed apart), then `make_dataset(...,
shuffle=True)`, one gather per batch. The reference, measured in the same run,
is the usual tutorial pipeline: `Dataset.from_tensor_slices` of the raw
strings, `Age` and the labels, `shuffle`, `batch`, and a `map` that runs a
`keras.layers.TextVectorization` per text column (and a `Normalization` on
`Age`) on every batch of every epoch. The reference layers carry the kmtl
features' fitted vocabulary and settings (`TextFeature._vectorize_layer`), and
both pipelines are checked to give the same token ids, numbers, labels and
sample weights on the first rows in order, so they do equal work. Both yield
`(features, labels, sample_weights)` batches of 256 and are read inside a
`tf.function`, as `fit` reads them.

The features are the reviews example's: `Title` and `Review Text` in one
vocabulary group of word 1-2-grams (40,000 tokens) and `Age`; the tasks
`rating`, `recommended` and `department`. The one-off costs are reported
beside the per-epoch rates: kmtl's vocabulary fit (document frequencies, the
`min_frequency` cut), a plain `TextVectorization.adapt` on the same texts for
scale, and the encoding, with the epochs after which encoding once has paid
for itself. Peak RSS is the whole process's (it includes any benchmark run
before this one in the same `run.py` call).

The targets are what this machine reached with a margin, not a guarantee.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import peak_rss_mb
from benchmarks.common import reviews_dir
from benchmarks.common import rows_per_second
from kmtl import Task
from kmtl.data import encode_labels
from kmtl.data import make_dataset
from kmtl.datasets import load_womens_clothing_reviews
from kmtl.features import Feature
from kmtl.features import encode_frame
from kmtl.features import fit_features
from kmtl.features import text_features

BATCH = 256
CHECK_ROWS = 512
TEXT = [{"columns": ["Title", "Review Text"], "encoder": "bag", "ngrams": 2,
         "max_tokens": 40000}]


def reviews():
    """`(train, features, tasks)`: the reviews training split, the example's
    features (unfitted) and its three tasks (fitted)."""
    train, _, _ = load_womens_clothing_reviews(reviews_dir())
    features = [Feature("Age", "numeric")] + text_features(TEXT)
    tasks = [Task("rating", "multiclass", target="Rating"),
             Task("recommended", "binary", target="Recommended IND"),
             Task("department", "multiclass", target="Department Name")]
    return train, features, [task.fit(train) for task in tasks]


def reference_dataset(frame, features, tasks, shuffle=True, seed=0):
    """The tutorial pipeline: raw strings in, `TextVectorization` in `map`.

    Yields `({text input name: (batch, sequence_length) int64, "Age": (batch,
    1) float32}, labels, sample_weights)`.
    """
    texts = [f for f in features if f.kind == "text"]
    (age,) = [f for f in features if f.kind == "numeric"]
    vectorizers = {f.input_name: f._vectorize_layer() for f in texts}
    normalize = keras.layers.Normalization(mean=age.mean, variance=age.variance)
    raw = {f.input_name: frame[f.name].fillna("").to_numpy(str) for f in texts}
    raw["Age"] = frame[["Age"]].to_numpy("float32")
    labels, weights = encode_labels(frame, tasks)

    def vectorize(x, y, w):
        out = {name: layer(x[name]) for name, layer in vectorizers.items()}
        out["Age"] = normalize(x["Age"])
        return out, y, w

    dataset = tf.data.Dataset.from_tensor_slices((raw, labels, weights))
    if shuffle:
        dataset = dataset.shuffle(len(frame), seed=seed,
                                  reshuffle_each_iteration=True)
    return (dataset.batch(BATCH)
            .map(vectorize, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def check_equal(frame, features, tasks, rows=CHECK_ROWS):
    """Asserts that both pipelines give the same batches for the first `rows`
    rows, in order: token ids, normalized `Age`, labels and sample weights."""
    texts = [f.input_name for f in features if f.kind == "text"]
    batches = rows // BATCH
    ours = make_dataset(frame, features, tasks, BATCH).take(batches)
    theirs = reference_dataset(frame, features, tasks, shuffle=False).take(batches)
    for (x, y, w), (rx, ry, rw) in zip(ours, theirs, strict=True):
        tokens = np.concatenate([rx[name] for name in texts], axis=1)
        np.testing.assert_array_equal(x["encoded:text"], tokens)
        np.testing.assert_allclose(x["encoded:numeric"], rx["Age"], rtol=1e-6)
        for name in y:
            np.testing.assert_array_equal(y[name], ry[name])
            np.testing.assert_array_equal(w[name], rw[name])


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(epochs=3):
    train, features, tasks = reviews()
    fit_seconds = _seconds(lambda: fit_features(features, train))
    encode_seconds = _seconds(lambda: encode_frame(features, train))
    texts = [f for f in features if f.kind == "text"]
    # Scale only: a plain adapt (no document-frequency cut, no idf) on the
    # same texts, as the tutorial fits its vocabulary.
    corpus = np.concatenate([train[f.name].fillna("").to_numpy(str) for f in texts])
    adapt_seconds = _seconds(lambda: keras.layers.TextVectorization(
        max_tokens=texts[0].max_tokens, ngrams=texts[0].ngrams).adapt(
            corpus, batch_size=8192))
    check_equal(train, features, tasks)

    kmtl_rate, rows = rows_per_second(
        make_dataset(train, features, tasks, BATCH, shuffle=True, seed=0), epochs)
    reference_rate, _ = rows_per_second(
        reference_dataset(train, features, tasks, shuffle=True, seed=0), epochs)
    kmtl_epoch, reference_epoch = rows / kmtl_rate, rows / reference_rate
    saving = reference_epoch - kmtl_epoch
    return {
        "kmtl_rows_per_s": kmtl_rate,
        "reference_rows_per_s": reference_rate,
        "fed_over_reference": kmtl_rate / reference_rate,
        "kmtl_epoch_s": kmtl_epoch,
        "reference_epoch_s": reference_epoch,
        "fit_features_s": fit_seconds,
        "reference_adapt_s": adapt_seconds,
        "encode_frame_s": encode_seconds,
        "epochs_to_amortize": encode_seconds / saving if saving > 0 else float("inf"),
        "peak_rss_mb": peak_rss_mb(),
        "rows": rows,
        "batch_size": BATCH,
        "epochs_timed": epochs,
        "sequence_lengths": {f.name: f.sequence_length for f in texts},
        "vocabulary_size": texts[0].vocabulary_size,
        "checked_rows": CHECK_ROWS,
        "targets": {"fed_over_reference": ">= 5"},
    }
