"""Multi-input multi-task learning: an image through a small CNN plus table columns.

scikit-learn's bundled digits (1,797 8x8 grey images, no download). Each example
has an image input, encoded by a small convolutional network, and two tabular
features derived from it: `ink` (numeric, the sum of the pixels) and
`heaviest_row` (categorical int64 codes: the image row with the highest mean ink;
Keras's `fit` takes a dict of NumPy arrays, which cannot hold strings, so a string
feature would be passed as a `tf.constant`). Two tasks
share the encoders: `digit` (multiclass, 0-9) and `is_even` (binary).

    .venv/bin/python examples/multi_input_digits.py [--epochs 40]

Prints per-task test metrics, saves a `.keras` file and exports a SavedModel for
TF Serving whose signature takes `image` as `(batch, 8, 8, 1)` float32 and the
tabular features as `(batch,)`.
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import kmtl  # noqa: E402
from kmtl.features import resolve_features  # noqa: E402

IMAGE_SHAPE = (8, 8, 1)


def digits_frame():
    """The digits as `(images, frame)`: float32 `(n, 8, 8, 1)` images in [0, 1]
    and a DataFrame with the tabular features and the labels."""
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    frame = pd.DataFrame({
        "ink": images.sum(axis=(1, 2, 3)),
        "heaviest_row": images.mean(axis=(2, 3)).argmax(axis=1).astype("int64"),
        "digit": digits.target,
        "is_even": (digits.target % 2 == 0).astype("int64"),
    })
    return images, frame


def cnn_encoder():
    """A small CNN: `(batch, 8, 8, 1)` -> `(batch, 32)`."""
    return keras.Sequential([
        keras.Input(IMAGE_SHAPE),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_0"),
        keras.layers.MaxPooling2D(name="pool_0"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_1"),
        keras.layers.GlobalAveragePooling2D(name="pool_1"),
    ], name="cnn")


def model_inputs(images, frame, features):
    """`{input: array}`: the image and one `(rows, 1)` column per feature."""
    inputs = {"image": images}
    for feature in features:
        inputs[feature.name] = feature.convert(frame)[:, None]
    return inputs


def main(epochs=40, out_dir=None, seed=0, verbose=True):
    """Trains, evaluates, saves and exports the model.

    Returns:
        `(metrics, paths)`: `{task: {metric: value}}` on the test split, and
        `{"keras": .keras file, "saved_model": export directory}`.
    """
    keras.utils.set_random_seed(seed)
    images, frame = digits_frame()
    rows = np.arange(len(frame))
    train_rows, test_rows = train_test_split(
        rows, test_size=0.2, random_state=seed, stratify=frame["digit"])
    train, test = frame.iloc[train_rows], frame.iloc[test_rows]

    tasks = [kmtl.Task("digit", "multiclass"), kmtl.Task("is_even", "binary")]
    for task in tasks:
        task.fit(train)
    features = resolve_features(train, numeric=["ink"],
                                categorical=["heaviest_row"])
    for feature in features:
        feature.fit(train)

    model = kmtl.build_model(features, tasks, "shared_bottom", units=(64,),
                             tower_units=(32,), encoders={"image": cnn_encoder()},
                             name="digits")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    labels = {t.name: t.encode(train)[0] for t in tasks}
    model.fit(model_inputs(images[train_rows], train, features), labels,
              batch_size=64, epochs=epochs, verbose=0)

    test_labels = {t.name: t.encode(test)[0] for t in tasks}
    logs = model.evaluate(model_inputs(images[test_rows], test, features),
                          test_labels, batch_size=256, return_dict=True, verbose=0)
    metrics = {t.name: {m: float(logs[f"{t.name}_{m}"])
                        for m in ["loss", *t.metrics]} for t in tasks}

    out_dir = out_dir or tempfile.mkdtemp(prefix="kmtl-digits-")
    keras_path = os.path.join(out_dir, "digits.keras")
    model.save(keras_path)
    export_path = kmtl.export_saved_model(model, os.path.join(out_dir, "serving"))
    if verbose:
        for task, values in metrics.items():
            shown = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"test {task:8s} {shown}")
        print(f"Saved {keras_path}")
        print(f"SavedModel for TF Serving: {export_path}")
    return metrics, {"keras": keras_path, "saved_model": export_path}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args()
    main(epochs=args.epochs, out_dir=args.out_dir)
