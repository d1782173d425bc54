"""Helpers shared by test modules (import as `from helpers import ...`)."""

import textwrap
from pathlib import Path


def snapshot(root):
    """Every path under `root` -> (size, mtime_ns, bytes) for files, None for dirs."""
    result = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        if path.is_dir():
            result[key] = None
        else:
            stat = path.stat()
            result[key] = (stat.st_size, stat.st_mtime_ns, path.read_bytes())
    return result


# A script for a fresh Python process that serves an export without kmtl:
# `python serve.py MODEL_DIR INPUTS_JSON OUTPUTS_NPZ [MODEL_DIR INPUTS_JSON
# OUTPUTS_NPZ ...]`, inputs keyed by signature input; several exports in one
# process save TensorFlow start-ups.
FRESH_PROCESS = textwrap.dedent("""\
    import json
    import sys


    class RefuseKmtl:
        # Serving must not need kmtl: importing it fails in this process.
        def find_spec(self, name, path=None, target=None):
            if name == "kmtl" or name.startswith("kmtl."):
                raise ImportError(f"{name} must not be needed to serve")


    sys.meta_path.insert(0, RefuseKmtl())

    import numpy as np
    import tensorflow as tf

    served = []
    args = sys.argv[1:]
    for model_dir, inputs_file, outputs_file in zip(args[::3], args[1::3], args[2::3]):
        with open(inputs_file) as handle:
            raw = json.load(handle)
        serve = tf.saved_model.load(model_dir).signatures["serving_default"]
        specs = serve.structured_input_signature[1]
        inputs = {name: tf.constant(raw[name], dtype=spec.dtype)
                  for name, spec in specs.items()}
        outputs = serve(**inputs)
        np.savez(outputs_file,
                 **{name: value.numpy() for name, value in outputs.items()})
        served.append(sorted(outputs))
    print(json.dumps({"kmtl": "kmtl" in sys.modules, "keras": "keras" in sys.modules,
                      "outputs": served[-1], "served": served}))
""")


def raw_columns(model, frame):
    """`{feature: (rows,) array}` straight from the table, as a client sends it."""
    columns = {}
    for feature in model.features:
        column = frame[feature.name]
        if feature.dtype == "float32":
            columns[feature.name] = column.to_numpy("float32")
        elif feature.dtype == "int64":
            columns[feature.name] = column.to_numpy("int64")
        else:
            values = column.astype(object).where(column.notna(), "").astype(str)
            columns[feature.name] = values.to_numpy()
    return columns
