"""Text features beyond the shared kind case: vocabulary groups, n-grams and
characters, the three encoders, and the errors for text that is not usable."""

import keras
import numpy as np
import pandas as pd
import pytest

import kmtl
from kmtl.data import make_dataset
from kmtl.errors import ConfigError
from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.features import fit_features
from kmtl.features import resolve_features
from kmtl.features import text_features
from kmtl.tasks import Task


@pytest.fixture
def reviews():
    """Eight short reviews with a title (one missing) and a 0/1 label."""
    return pd.DataFrame({
        "Title": ["Love it", "Too small", None, "Love the color", "Runs small",
                  "Great dress", "Not for me", "Love love love"],
        "Review Text": ["The dress fits well", "Small and tight", "Nice fabric",
                        "The color is great", "Order a size up",
                        "Great fit and fabric", "Fabric feels cheap",
                        "Best dress I own"],
        "liked": [1, 0, 1, 1, 0, 1, 0, 1],
    })


def test_a_group_shares_one_vocabulary_fitted_on_all_its_columns(reviews):
    title, text = text_features([{"columns": ["Title", "Review Text"],
                                  "min_frequency": 1}])
    assert title.group == text.group == "Title"
    fit_features([title, text], reviews)
    assert title.vocabulary == text.vocabulary
    # "fabric" is only in the review texts, "love" only in the titles.
    assert {"fabric", "love"} <= set(title.vocabulary)
    # Document frequency over the 16 cells: dress, fabric, great, love, small
    # and the are in 3 each, the most; ties in sorted order.
    assert title.vocabulary[:6] == ["dress", "fabric", "great", "love", "small",
                                    "the"]
    # Each column keeps its own length: titles 3 words, reviews 4.
    assert (title.sequence_length, text.sequence_length) == (3, 4)


def test_a_group_has_one_encoder_read_by_each_column(reviews):
    features = fit_features(text_features(
        [{"columns": ["Title", "Review Text"], "min_frequency": 1, "dim": 8}]),
        reviews)
    task = Task("liked", "binary").fit(reviews)
    model = kmtl.build_model(features, [task], units=(4,), tower_units=())
    encoders = [layer.name for layer in model.layers if "encoder" in layer.name]
    assert encoders == ["text_Title_encoder"]
    encoder = model.get_layer("text_Title_encoder")
    # Called once per column: two outputs, one kernel.
    assert len(encoder._inbound_nodes) == 2
    assert len(encoder.trainable_weights) == 2


def test_features_of_one_group_fitted_apart_are_refused(reviews):
    title, text = text_features([{"columns": ["Title", "Review Text"],
                                  "min_frequency": 1}])
    title.fit(reviews)
    text.fit(reviews)
    with pytest.raises(ConfigError, match="share the group 'Title' but were "
                                          "fitted apart"):
        type(title).encode([title, text], reviews)


def test_a_group_with_different_settings_is_refused(reviews):
    a = Feature("Title", "text", group="g", ngrams=1)
    b = Feature("Review Text", "text", group="g", ngrams=2)
    with pytest.raises(ConfigError, match=r"share the group 'g' .* differ in "
                                          r"\['ngrams'\]"):
        fit_features([a, b], reviews)


def test_word_bigrams_follow_the_words(reviews):
    feature = Feature("Title", "text", ngrams=2, min_frequency=2).fit(reviews)
    # "love" is in 3 titles, "small" in 2, "love love" and the rest in 1.
    assert feature.vocabulary == ["love", "small"]
    tokens = feature.tokens(pd.DataFrame({"Title": ["love small", "small love"]}))
    # Unigrams first, then the bigram (out of vocabulary, 1); padded with 0.
    assert tokens.tolist() == [[2, 3, 1, 0, 0], [3, 2, 1, 0, 0]]


def test_character_ngrams():
    frame = pd.DataFrame({"code": ["ab", "ab", "ba"]})
    feature = Feature("code", "text", split="character", ngrams=2,
                      min_frequency=2).fit(frame)
    # Characters a, b (3 texts each) and the pair "a b" (2 texts); "b a" (1)
    # is cut by min_frequency.
    assert feature.vocabulary == ["a", "b", "a b"]
    assert feature.sequence_length == 3
    assert feature.tokens(frame).tolist() == [[2, 3, 4], [2, 3, 4], [3, 2, 1]]


def test_max_tokens_keeps_the_most_frequent(reviews):
    feature = Feature("Review Text", "text", max_tokens=5,
                      min_frequency=1).fit(reviews)
    # Padding and out-of-vocabulary count toward max_tokens, as in Keras:
    # three words, fabric (3 texts), then the first two of those in 2 texts
    # (and, dress, great, the) in sorted order.
    assert feature.vocabulary == ["fabric", "and", "dress"]
    assert feature.vocabulary_size == 5


def test_missing_text_is_the_empty_string(reviews):
    feature = Feature("Title", "text", min_frequency=1).fit(reviews)
    tokens = feature.tokens(reviews.iloc[[2]])
    assert tokens.tolist() == [[0] * feature.sequence_length]


@pytest.mark.parametrize("column, message", [
    ([None, None, np.nan], r"Text feature 'notes' has no text in the training "
                           r"data \(every value is missing or empty\)"),
    (["", "  ", None], r"Text feature 'notes' has no text in the training data"),
    ([1.5, 2.5, 3.0], r"Text feature 'notes' holds float64 values, not text. "
                      r"Declare it numeric or categorical"),
    (pd.Series(["ok", 7, "fine"], dtype=object),
     r"Text feature 'notes' holds values that are not text, such as 7 \(int\) "
     r"in row 1"),
    (["!!!", "...", "?"], r"Text feature\(s\) 'notes': the vocabulary is empty: "
                          r"no word n-gram is found in at least min_frequency=1"),
])
def test_unusable_text_is_a_clear_error_naming_the_column(column, message):
    frame = pd.DataFrame({"notes": column})
    with pytest.raises(DataError, match=message):
        Feature("notes", "text", min_frequency=1).fit(frame)


def test_a_vocabulary_emptied_by_min_frequency_says_to_lower_it(reviews):
    with pytest.raises(DataError, match="Lower min_frequency"):
        Feature("Title", "text", min_frequency=50).fit(reviews)


@pytest.mark.parametrize("settings, message", [
    ({"encoder": "lstm"}, r"Text feature 'notes': encoder must be one of "
                          r"\('bag', 'embedding', 'transformer', 'pretrained'\). "
                          r"Received: encoder='lstm'"),
    ({"ngrams": 0}, "ngrams must be a positive integer"),
    ({"split": "word"}, "split must be one of"),
    ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
    ({"encoder": "transformer", "dim": 10, "num_heads": 4},
     r"num_heads must be a divisor of dim \(10\)"),
    ({"vocab": 10}, r"unknown setting\(s\) \['vocab'\]"),
])
def test_bad_settings_name_the_feature_and_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        Feature("notes", "text", **settings)


def test_declarations_name_the_item():
    with pytest.raises(ConfigError, match=r"features.text\[1\] needs `columns`"):
        text_features(["a", {"encoder": "bag"}])
    with pytest.raises(ConfigError, match=r"features.text\[0\] must be a column "
                                          r"name or a mapping"):
        text_features([3])


def test_resolve_features_puts_text_last_and_refuses_a_column_twice(reviews):
    features = resolve_features(reviews, exclude=["liked"], text=["Review Text"])
    assert [(f.name, f.kind) for f in features] == [
        ("Title", "categorical"), ("Review Text", "text")]
    with pytest.raises(ConfigError, match=r"\['Title'\] are declared more than "
                                          r"once"):
        resolve_features(reviews, categorical=["Title"], text=["Title"],
                         exclude=["liked"])


@pytest.mark.parametrize("encoder, layer", [
    ("bag", "Dense"), ("embedding", "SequencePooling"),
    ("transformer", "TransformerTextEncoder")])
def test_each_encoder_trains_and_round_trips(reviews, encoder, layer, tmp_path):
    features = fit_features(text_features([{
        "columns": ["Title", "Review Text"], "encoder": encoder, "dim": 8,
        "num_heads": 2, "min_frequency": 1, "dropout": 0.1}]), reviews)
    task = Task("liked", "binary").fit(reviews)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, [task], units=(4,), tower_units=())
    assert type(model.get_layer("text_Title_encoder")).__name__ == layer
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(make_dataset(reviews, features, [task], 4), epochs=2,
                        verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    encoded = model.predict(make_dataset(reviews, features), verbose=0)["liked"]
    raw = model.predict(make_dataset(reviews, features, encoded=False),
                        verbose=0)["liked"]
    np.testing.assert_allclose(encoded, raw, rtol=1e-6, atol=1e-6)
    path = tmp_path / f"{encoder}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    again = loaded.predict(make_dataset(reviews, loaded.features), verbose=0)
    np.testing.assert_allclose(again["liked"], encoded, rtol=1e-6, atol=1e-6)


def test_empty_texts_do_not_change_the_transformer_output_of_others(reviews):
    """Padding is masked: a text gives the same vector whatever the length it
    is padded to."""
    from kmtl.layers import TransformerTextEncoder

    keras.utils.set_random_seed(0)
    encoder = TransformerTextEncoder(10, 6, embedding_dim=8, num_heads=2,
                                     dropout=0.0)
    short = encoder(np.array([[4, 5, 0, 0, 0, 0]]))
    longer = encoder(np.array([[4, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(longer)[0],
                               keras.ops.convert_to_numpy(short)[0], rtol=1e-5,
                               atol=1e-6)
    empty = encoder(np.zeros((1, 6), "int64"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(empty), 0.0)


def test_a_pretrained_preset_tokenizes_and_encodes_without_the_files(
        reviews, tmp_path):
    """The `pretrained` encoder on a tiny local BERT preset: no vocabulary is
    fitted, the sequence length counts [CLS] and [SEP], training runs on the
    encoded block, and the `.keras` file serves without the preset folder."""
    import shutil

    from helpers import HIDDEN
    from helpers import VOCABULARY
    from helpers import write_preset

    preset = write_preset(tmp_path / "preset")
    features = fit_features(text_features([{
        "columns": ["Title", "Review Text"], "encoder": "pretrained",
        "preset": preset}]), reviews)
    title, text = features
    assert title.vocabulary == [] and title.idf is None
    # Longest title "Love the color" -> [CLS] [UNK] the [UNK] [SEP]: 5 ids;
    # longest review "The dress fits well" -> [CLS] the dress fit ##s well
    # [SEP]: 7.
    assert (title.sequence_length, text.sequence_length) == (5, 7)
    tokens = title.tokens(pd.DataFrame({"Title": ["the dress", None]}))
    cls, sep = VOCABULARY.index("[CLS]"), VOCABULARY.index("[SEP]")
    assert tokens.tolist() == [[cls, VOCABULARY.index("the"),
                                VOCABULARY.index("dress"), sep, 0],
                               [cls, sep, 0, 0, 0]]
    task = Task("liked", "binary").fit(reviews)
    keras.utils.set_random_seed(0)
    model = kmtl.build_model(features, [task], units=(4,), tower_units=())
    assert model.get_layer("text_Title_encoder").hidden_dim == HIDDEN
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(make_dataset(reviews, features, [task], 4), epochs=1,
                        verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    encoded = model.predict(make_dataset(reviews, features), verbose=0)["liked"]
    raw = model.predict(make_dataset(reviews, features, encoded=False),
                        verbose=0)["liked"]
    np.testing.assert_allclose(encoded, raw, rtol=1e-5, atol=1e-6)
    path = tmp_path / "pretrained.keras"
    model.save(path)
    shutil.rmtree(preset)
    loaded = keras.saving.load_model(path)
    again = loaded.predict(make_dataset(reviews, features, encoded=False),
                           verbose=0)["liked"]
    np.testing.assert_allclose(again, raw, rtol=1e-5, atol=1e-6)


def test_preset_only_with_the_pretrained_encoder(tmp_path):
    with pytest.raises(ConfigError, match="preset must be a local KerasHub preset "
                                          "directory with encoder 'pretrained'"):
        Feature("notes", "text", encoder="pretrained")
    with pytest.raises(ConfigError, match="preset must be"):
        Feature("notes", "text", encoder="bag", preset=str(tmp_path))
