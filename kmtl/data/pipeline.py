"""tf.data input pipelines from a DataFrame.

The frame is converted once to a few column-stacked tensors, plus labels and
sample weights. By default these are the *encoded blocks*: the fitted
preprocessing (vocabulary lookups, normalization) applied once, vectorized, in
NumPy (`kmtl.features.encode_frame`), so training slices integer and float
arrays and the model skips its preprocessing layers (its encoded path, see
`MultiTaskModel.forward`). With `encoded=False` they are the raw values, one
tensor per raw dtype, for a model that takes raw inputs only. Each batch is
then one `tf.gather` per tensor on a batch of row indices: no per-row Python
and no per-row tf.data elements. Shuffling permutes the row indices once per
epoch with a stateless shuffle seeded from `tf.data.Dataset.random(seed)`, so
the order is the same for the same seed, and differs from epoch to epoch.
"""

import numpy as np
import tensorflow as tf

from kmtl.features import encode_frame

TF_DTYPES = {"float32": tf.float32, "string": tf.string, "int64": tf.int64}


def _stack_features(frame, features):
    """Groups feature columns by raw dtype into `(rows, k)` tensors.

    Numbers are stacked as they are. Strings are stacked as int32 codes into one
    table of every column's distinct values (`Feature.factorize`), so the frame is
    converted without building millions of string objects, and a batch becomes
    strings with a second gather. Returns `{dtype: (names, matrix, table)}`.
    """
    groups = {}
    for feature in features:
        groups.setdefault(feature.dtype, []).append(feature)
    stacked = {}
    for dtype, members in groups.items():
        names = [f.input_name for f in members]
        if dtype == "string":
            columns, texts, offset = [], [], 0
            for feature in members:
                codes, text = feature.factorize(frame)
                columns.append(codes + offset)
                texts.append(text)
                offset += len(text)
            table = tf.constant(np.concatenate(texts), tf.string)
        else:
            columns, table = [f.convert(frame) for f in members], None
        code_dtype = tf.int32 if dtype == "string" else TF_DTYPES[dtype]
        matrix = tf.constant(np.stack(columns, axis=1), code_dtype)
        stacked[dtype] = (names, matrix, table)
    return stacked


def feature_blocks(frame, features, encoded):
    """The feature tensors of `frame` that batches are gathered from:
    `{key: (names, matrix, table)}`, the encoded blocks (`encoded=True`, one
    name per block) or the raw values stacked by dtype (`_stack_features`)."""
    if encoded:
        return {key: ([key], tf.constant(block), None)
                for key, block in encode_frame(features, frame).items()}
    return _stack_features(frame, features)


def gather_features(stacked, index):
    """One batch of features: the rows `index` of every stacked block."""
    batch = {}
    for names, matrix, table in stacked.values():
        if len(names) == 1 and table is None:
            batch[names[0]] = tf.gather(matrix, index)
            continue
        columns = tf.split(tf.gather(matrix, index), len(names), axis=1)
        if table is not None:
            columns = [tf.gather(table, c) for c in columns]
        batch.update(zip(names, columns))
    return batch


def encode_labels(frame, tasks):
    """Encodes every task's labels of `frame` for training.

    Args:
        frame: pandas DataFrame holding the tasks' target columns.
        tasks: list of fitted `kmtl.Task`.

    Returns:
        `(labels, sample_weights)`: two dicts keyed by task name, each value as
        `Task.encode` returns it (labels `(rows, units)` float32 or `(rows,)`
        int32 class indices; sample weights `(rows,)` float32, 0 where the row
        has no label for the task).

    Raises:
        DataError: a target column is absent or a label does not fit its task's
            type.
    """
    labels, weights = {}, {}
    for task in tasks:
        labels[task.name], weights[task.name] = task.encode(frame)
    return labels, weights


def make_dataset(frame, features, tasks=None, batch_size=256, shuffle=False, seed=0,
                 drop_remainder=False, encoded=True, cache=False, first_epoch=0):
    """A `tf.data.Dataset` of batches from a DataFrame.

    Args:
        frame: pandas DataFrame with the feature columns under their own names
            (and label columns when `tasks` is given).
        features: list of fitted `kmtl.features.Feature`.
        tasks: list of fitted `kmtl.Task`, or None for features only (predict).
        batch_size: int, rows per batch.
        shuffle: bool. Permute rows every epoch.
        seed: int. Seed of the permutation: same seed, same order of batches.
            Epoch `e`'s order depends on `(seed, e)` only (stateless).
        first_epoch: int, default 0. The epoch number of the first pass over
            the dataset (with `shuffle`): a run resumed after `k` epochs
            passes `k` to see the orders an uninterrupted run sees.
        drop_remainder: bool. Drop the last partial batch.
        encoded: bool, default True. Yield the encoded blocks, for a
            `kmtl.MultiTaskModel` (`fit`, `evaluate`, `predict`, or calling
            it on a batch); False: the raw values, for a SavedModel or
            another model that takes raw inputs, and for models saved by
            kmtl 0.2.
        cache: bool, default False. Keep the batches in memory after the
            first pass (`Dataset.cache`), for a dataset read every epoch
            without shuffling (validation): each new pass then skips
            rebuilding the iterator over the frame's arrays, which costs more
            than a small split's evaluation (29 ms against 7 ms per
            evaluation of 52 rows). Refused with `shuffle`.

    Returns:
        A dataset of `(features, labels, sample_weights)` (or `features`), where
        `features` maps each feature kind's `Feature.encoded_key()`
        (`encoded:numeric`, `encoded:categorical`) to its `(batch, width)`
        block (`encoded=True`), or each feature's model input name
        (`Feature.input_name`: its column name unless that is not a valid
        input name, e.g. `bill length (mm)` -> `bill_length_mm`) to a
        `(batch, 1)` tensor of its raw dtype (`encoded=False`),
        `labels` maps each task name to its encoded labels and `sample_weights` maps
        each task name to a `(batch,)` float32 tensor that is 0 for unlabelled rows.

    Raises:
        DataError: a column is missing or holds values that do not fit its kind.
        ValueError: `batch_size` is not a positive integer, or `cache` with
            `shuffle` (the cached order would repeat every epoch).
    """
    if cache and shuffle:
        raise ValueError("make_dataset: cache=True keeps the first epoch's order; "
                         "it cannot be combined with shuffle=True.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: "
                         f"batch_size={batch_size!r}")
    rows = len(frame)
    stacked = feature_blocks(frame, features, encoded)
    targets = None
    if tasks:
        labels, weights = encode_labels(frame, tasks)
        targets = (
            {k: tf.constant(v) for k, v in labels.items()},
            {k: tf.constant(v) for k, v in weights.items()},
        )
    num_batches = rows // batch_size if drop_remainder else -(-rows // batch_size)

    def gather(index):
        batch = gather_features(stacked, index)
        if targets is None:
            return batch
        labels = {k: tf.gather(v, index) for k, v in targets[0].items()}
        weights = {k: tf.gather(v, index) for k, v in targets[1].items()}
        return batch, labels, weights

    def batch_slices(order):
        def one(b):
            return order[b * batch_size : tf.minimum((b + 1) * batch_size, rows)]

        return tf.data.Dataset.range(num_batches).map(one)

    if shuffle:
        # Epoch e's order is a function of (seed, e) alone: every iterator
        # made of the dataset (Keras makes one per epoch) takes the next
        # epoch number, starting from `first_epoch`, so a resumed run draws
        # the orders of an uninterrupted one.
        epochs = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)

        def permutation(_):
            epoch = epochs.assign_add(1) - 1
            seed_pair = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(
                tf.range(rows, dtype=tf.int64), seed=seed_pair
            )
            return batch_slices(order)

        indices = tf.data.Dataset.range(1).flat_map(permutation)
    else:
        indices = batch_slices(tf.range(rows, dtype=tf.int64))
    dataset = indices.map(
        gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    if cache:
        dataset = dataset.cache()
    return dataset.prefetch(tf.data.AUTOTUNE)
