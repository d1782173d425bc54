"""Tests for `kmtl.layers.PresetTokenizer` and `kmtl.layers.PresetTextEncoder`,
a pretrained KerasHub text model read from local preset files, on a tiny BERT
preset written by the test (nothing is downloaded)."""

import json
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import HIDDEN
from helpers import LONGEST
from helpers import VOCABULARY
from helpers import write_preset

from kmtl.layers import PresetTextEncoder
from kmtl.layers import PresetTokenizer

TEXTS = ["The dress fits well.", "great", "", "the dress runs too small , "
         "the dress is a great fit"]


def ids_of(*tokens):
    return [VOCABULARY.index(token) for token in tokens]


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return write_preset(tmp_path_factory.mktemp("tiny_bert"))


# === PresetTokenizer ===


def test_tokenizer_ids_by_hand(preset):
    tokenizer = PresetTokenizer(preset, 8)
    ids = np.asarray(tokenizer(np.array(TEXTS)))
    cls, sep = ids_of("[CLS]", "[SEP]")
    assert ids.dtype == np.int32
    assert ids.tolist() == [
        [cls, *ids_of("the", "dress", "fit", "##s", "well", "."), sep],
        [cls, *ids_of("great"), sep, 0, 0, 0, 0, 0],
        [cls, sep, 0, 0, 0, 0, 0, 0],
        [cls, *ids_of("the", "dress", "runs", "too", "small", "[UNK]"), sep]]
    assert tokenizer.padding_id == 0
    assert tokenizer.sequence_length == 8


def test_tokenizer_packs_as_the_preset_preprocessor(preset):
    import keras_hub

    reference = keras_hub.models.TextClassifierPreprocessor.from_preset(
        preset, sequence_length=6)
    tokenizer = PresetTokenizer(preset, 6)
    np.testing.assert_array_equal(
        np.asarray(tokenizer(np.array(TEXTS))),
        np.asarray(reference(tf.constant(TEXTS))["token_ids"]))


def test_tokenizer_defaults_and_dtype(preset):
    tokenizer = PresetTokenizer(preset, dtype="int64")
    assert tokenizer.sequence_length == LONGEST
    inputs = keras.Input((), dtype="string")
    outputs = tokenizer(inputs)
    assert (outputs.shape, outputs.dtype) == ((None, LONGEST), "int64")
    ids = keras.Model(inputs, outputs)(tf.constant(["great"]))
    assert ids.dtype == tf.int64
    assert np.asarray(ids)[0, :3].tolist() == ids_of("[CLS]", "great", "[SEP]")


@pytest.mark.parametrize("kwargs,message", [
    ({"sequence_length": LONGEST + 1}, r"at most the preset's "
     r"max_sequence_length \(16\). Received: sequence_length=17"),
    ({"sequence_length": 2}, r"at least 3. Received: sequence_length=2"),
    ({"sequence_length": 8, "dtype": "float32"},
     r"integer dtype .*Received: dtype='float32'")])
def test_tokenizer_rejects_bad_arguments(preset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PresetTokenizer(preset, **kwargs)


# === PresetTextEncoder ===


def test_encoder_shapes_weights_and_masked_mean(preset):
    encoder = PresetTextEncoder(preset)
    ids = np.asarray(PresetTokenizer(preset, 8)(np.array(TEXTS)))
    vectors = np.asarray(encoder(ids))
    assert vectors.shape == (len(TEXTS), HIDDEN)
    assert encoder.compute_output_shape((None, 8)) == (None, HIDDEN)
    assert (encoder.padding_id, encoder.max_sequence_length) == (0, LONGEST)
    # The mean of the backbone's token vectors over the ids that are not padding.
    sequence = np.asarray(encoder.backbone({
        "token_ids": ids, "padding_mask": ids != 0,
        "segment_ids": np.zeros_like(ids)})["sequence_output"])
    keep = (ids != 0)[..., None]
    np.testing.assert_allclose(vectors, (sequence * keep).sum(1) / keep.sum(1),
                               rtol=1e-5, atol=1e-6)
    # The pooled dense layer the mean does not read is frozen.
    backbone_weights = len(encoder.backbone.weights)
    assert len(encoder.trainable_weights) == backbone_weights - 2
    assert len(PresetTextEncoder(preset, pooling="cls").trainable_weights) == (
        backbone_weights)


def test_padding_does_not_change_a_row(preset):
    encoder = PresetTextEncoder(preset)
    short = np.asarray(PresetTokenizer(preset, 8)(np.array(TEXTS[1:3])))
    padded = np.pad(short, ((0, 0), (0, 6)))
    np.testing.assert_allclose(np.asarray(encoder(padded)),
                               np.asarray(encoder(short)), rtol=1e-5, atol=1e-6)


def test_cls_pooling_is_the_pooled_output(preset):
    encoder = PresetTextEncoder(preset, pooling="cls")
    ids = np.asarray(PresetTokenizer(preset, 8)(np.array(TEXTS)))
    pooled = encoder.backbone({"token_ids": ids, "padding_mask": ids != 0,
                               "segment_ids": np.zeros_like(ids)})
    np.testing.assert_allclose(np.asarray(encoder(ids)),
                               np.asarray(pooled["pooled_output"]), atol=1e-6)


def test_encoder_config_round_trip(preset):
    encoder = PresetTextEncoder(preset, pooling="cls", name="text_encoder")
    ids = np.asarray(PresetTokenizer(preset, 8)(np.array(TEXTS)))
    config = encoder.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config["backbone"]["class_name"] == "BertBackbone"
    clone = PresetTextEncoder.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(encoder.get_weights())
    np.testing.assert_allclose(np.asarray(clone(ids)), np.asarray(encoder(ids)),
                               atol=1e-6)


def test_encoder_rejects_bad_arguments(preset):
    with pytest.raises(ValueError, match=r"pooling must be one of \('mean', "
                       r"'cls'\). Received: pooling='max'"):
        PresetTextEncoder(preset, pooling="max")
    with pytest.raises(ValueError, match="max_sequence_length=16 ids per text. "
                       "Received sequences of 20"):
        PresetTextEncoder(preset)(np.zeros((2, 20), "int32"))
    with pytest.raises(ValueError, match=r"preset=\.\.\.\) or a KerasHub "
                       r"backbone"):
        PresetTextEncoder()


@pytest.mark.parametrize("layer", [PresetTokenizer, PresetTextEncoder])
def test_a_missing_preset_is_a_clear_error(tmp_path, layer):
    missing = str(tmp_path / "bert_tiny_en_uncased")
    with pytest.raises(ValueError, match=rf"preset={missing!r}, which is not a "
                       r"directory. The preset files must be downloaded "
                       r"beforehand"):
        layer(missing)
    with pytest.raises(ValueError, match="not a directory"):
        layer("bert_tiny_en_uncased")
    with pytest.raises(ValueError, match=rf"{str(tmp_path)!r} has no "
                       r"(tokenizer|config)\.json"):
        layer(str(tmp_path))


# === In a model: .keras and export ===


SERVE = textwrap.dedent("""\
    import json
    import sys

    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    served = tf.saved_model.load(sys.argv[1])
    texts = tf.constant(json.loads(sys.argv[2]))[:, None]
    print(json.dumps({"outputs": served.serve(texts).numpy().ravel().tolist(),
                      "kmtl": "kmtl" in sys.modules,
                      "keras_hub": "keras_hub" in sys.modules}))
""")


def test_model_saves_loads_without_the_preset_and_exports(tmp_path):
    import tensorflow_text  # noqa: F401  (the WordPiece ops, to serve)

    preset = write_preset(tmp_path / "preset")
    inputs = keras.Input((1,), dtype="string", name="review")
    tokenizer = PresetTokenizer(preset, 8, name="tokens")
    vectors = PresetTextEncoder(preset, padding_id=tokenizer.padding_id)(
        tokenizer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(vectors))
    model.compile(optimizer="adam", loss="mse")
    texts = tf.constant(TEXTS)[:, None]
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(texts, np.arange(4.0), batch_size=2, epochs=1, verbose=0)
    assert not any(np.array_equal(a, w.numpy())
                   for a, w in zip(before, model.trainable_weights))
    expected = model.predict(texts, verbose=0)

    model.save(tmp_path / "model.keras")
    shutil.rmtree(preset)
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict(texts, verbose=0), expected)

    # Eager calls on str or bytes give the ids of the model.
    in_model = keras.Model(loaded.input, loaded.get_layer("tokens").output)
    ids = in_model.predict(texts, verbose=0)
    layer = loaded.get_layer("tokens")
    np.testing.assert_array_equal(np.asarray(layer(np.array(TEXTS))), ids)
    np.testing.assert_array_equal(
        np.asarray(layer([text.encode() for text in TEXTS])), ids)

    loaded.export(str(tmp_path / "export"), format="tf_saved_model",
                  verbose=False)
    served = tf.saved_model.load(str(tmp_path / "export"))
    np.testing.assert_allclose(served.serve(texts).numpy(), expected, rtol=1e-5,
                               atol=1e-6)
    # A fresh process without kmtl or KerasHub serves it after importing
    # tensorflow_text.
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "export"),
                          json.dumps(TEXTS)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert not answer["kmtl"] and not answer["keras_hub"]
    np.testing.assert_allclose(answer["outputs"], expected.ravel(), rtol=1e-5,
                               atol=1e-6)
