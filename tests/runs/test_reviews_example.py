"""The reviews example (`examples/womens_clothing_reviews.yaml`) end to end on the
real table: a text task trains from the config alone, exports, and the export
answers the README's REST body in a fresh process that imports TensorFlow only."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from helpers import REFUSE_KMTL

from kmtl.runs.training import train

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "womens_clothing_reviews.yaml"
REST_BODY = REPO / "examples" / "womens_clothing_reviews_request.json"

SERVE_REST_BODY = REFUSE_KMTL + textwrap.dedent("""\

    import tensorflow as tf

    model_dir, body_file = sys.argv[1:]
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    specs = serve.structured_input_signature[1]
    with open(body_file) as handle:
        instances = json.load(handle)["instances"]
    # TF Serving's row format: one input's values across instances, one batch.
    inputs = {name: tf.constant([row[name] for row in instances], spec.dtype)
              for name, spec in specs.items()}
    outputs = serve(**inputs)
    print(json.dumps({
        "inputs": {name: spec.dtype.name for name, spec in specs.items()},
        "predictions": [{name: value[i].numpy().tolist()
                         for name, value in outputs.items()}
                        for i in range(len(instances))],
        "modules": sorted(m for m in ("kmtl", "keras_hub", "tensorflow_text")
                          if m in sys.modules)}))
""")


@pytest.fixture(scope="module")
def trained(reviews_dir, tmp_path_factory):
    """The example config, exported after two epochs at a learning rate of
    0.001 (the example's 0.0003 needs 5-7)."""
    folder = tmp_path_factory.mktemp("reviews")
    config = yaml.safe_load(CONFIG.read_text())
    config["training"].update(epochs=2, learning_rate=0.001, verbose=0)
    config["export"] = {"dir": str(folder / "export")}
    result = train(config, data_dir=reviews_dir, output_dir=str(folder / "runs"),
                   log=lambda line: None)
    return result


def test_the_config_names_the_original_columns():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["features"]["text"][0]["columns"] == ["Title", "Review Text"]
    assert [t["target"] for t in config["tasks"]] == [
        "Rating", "Recommended IND", "Department Name"]


def test_two_epochs_learn_every_task(trained):
    test = trained["metrics"]["test"]
    # Majority class: rating 0.553 (README); recommended AUC 0.5.
    assert test["rating"]["accuracy"] > 0.58
    assert test["recommended"]["auc"] > 0.9
    assert test["department"]["accuracy"] > 0.6


def test_the_export_answers_the_rest_body_with_tensorflow_only(trained, tmp_path):
    export = trained["export_dir"]
    script = tmp_path / "serve.py"
    script.write_text(SERVE_REST_BODY)
    result = subprocess.run(
        [sys.executable, str(script), export, str(REST_BODY)], capture_output=True,
        text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["modules"] == []
    assert answer["inputs"] == {"Title": "string", "Review_Text": "string",
                                "Age": "float32",
                                "Positive_Feedback_Count": "float32"}
    predictions = answer["predictions"]
    assert len(predictions) == 3
    for row in predictions:
        assert sorted(row) == ["department", "rating", "recommended"]
        assert len(row["rating"]) == 5 and len(row["department"]) == 6
        assert sum(row["rating"]) == pytest.approx(1.0, abs=1e-5)
    # The same rows through the trained model in this process.
    model = keras.saving.load_model(Path(trained["run_dir"]) / "model.keras")
    instances = json.loads(REST_BODY.read_text())["instances"]
    names = {f.input_name: f for f in model.features}
    inputs = {name: tf.constant([[row[name]] for row in instances],
                                "string" if names[name].dtype == "string"
                                else "float32") for name in names}
    expected = model.predict(inputs, verbose=0)
    for task in ("rating", "recommended", "department"):
        np.testing.assert_allclose([row[task] for row in predictions],
                                   expected[task], rtol=1e-5, atol=1e-6)
    # A glowing review is recommended, a complaint is not.
    assert predictions[0]["recommended"][0] > predictions[1]["recommended"][0]
