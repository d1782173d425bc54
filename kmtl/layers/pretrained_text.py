"""A pretrained KerasHub text model from local preset files: its tokenizer
(strings to token ids) and its backbone (token ids to one vector)."""

import json
import os

import keras
from keras import layers
from keras import ops
from keras import saving

from kmtl.layers._keras_hub import keras_hub
from kmtl.layers.sequence_pooling import SequencePooling

PRESET_POOLINGS = ("mean", "cls")
"""`PresetTextEncoder` poolings: the masked mean of the token vectors, or the
backbone's pooled (`[CLS]`) output."""


def _check_preset(preset, config_file):
    """Raises a ValueError naming `preset` unless it is a local preset
    directory holding `config_file`: kmtl never downloads a preset."""
    how = ("The preset files must be downloaded beforehand (kmtl never "
           "downloads them): on a machine with network access, run "
           "`backbone = keras_hub.models.Backbone.from_preset("
           "'bert_tiny_en_uncased')`, `backbone.save_to_preset(dir)` and "
           "`keras_hub.tokenizers.Tokenizer.from_preset("
           "'bert_tiny_en_uncased').save_to_preset(dir)`, then pass that "
           "directory.")
    if not isinstance(preset, str | os.PathLike) or not os.path.isdir(preset):
        raise ValueError(f"preset must be a local preset directory. Received: "
                         f"preset={preset!r}, which is not a directory. {how}")
    if not os.path.isfile(os.path.join(preset, config_file)):
        raise ValueError(f"The preset directory {str(preset)!r} has no "
                         f"{config_file}. {how}")
    return os.fspath(preset)


def _preset_max_sequence_length(preset):
    """The backbone's longest input in a preset's `config.json`, or None."""
    path = os.path.join(preset, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle).get("config", {})
    length = config.get("max_sequence_length")
    return None if length is None else int(length)


@saving.register_keras_serializable(package="kmtl")
class PresetTokenizer(layers.Layer):
    """Raw strings to the token ids of a pretrained KerasHub model, read from
    a local preset directory: what the preset's `TextClassifierPreprocessor`
    gives as `token_ids` for one segment.

    The preset's tokenizer (`keras_hub.tokenizers.Tokenizer.from_preset`, e.g.
    a WordPiece `BertTokenizer`) splits each text, and a
    `keras_hub.layers.StartEndPacker` adds the tokenizer's start and end
    tokens (`[CLS]` and `[SEP]` for BERT, `<s>` and `</s>` for RoBERTa), cuts
    the ids to `sequence_length` and pads them with the tokenizer's padding id
    (`padding_id`). Both run as TensorFlow ops, also in an exported
    SavedModel; called eagerly (on a 1-D array of `str` or `bytes`, to encode
    a whole column once) the layer runs the same ops in a `tf.function`, so
    it gives the same ids as inside a model.

    The tokenizer's vocabulary is saved as an asset of a `.keras` file, which
    loads without the preset directory; the config alone does not hold it
    (as for KerasHub's tokenizers), so `from_config` without the assets, as
    in `keras.models.clone_model`, gives a tokenizer without a vocabulary.
    A SavedModel export uses TensorFlow Text ops (WordPiece): the serving
    process must `import tensorflow_text` before `tf.saved_model.load`.
    KerasHub is imported when the layer is created; the layer is registered
    with kmtl, so a `.keras` file loads without `custom_objects`.

    Args:
        preset: str or None. A local preset directory holding
            `tokenizer.json` and its assets (see Raises); read when
            `tokenizer` is None, and kept in the config as a record.
        sequence_length: int or None. Ids per text, the start and end tokens
            included. None: the preset backbone's `max_sequence_length`
            (required when that is unknown).
        tokenizer: a KerasHub tokenizer, its serialized config, or None (load
            it from `preset`).
        packer: a `keras_hub.layers.StartEndPacker`, its serialized config, or
            None (the tokenizer's start, end and padding ids, the padding id
            0 when the tokenizer has none).
        **kwargs: Keras layer arguments; `dtype` is the ids' dtype,
            `"int32"` (default, as KerasHub gives them) or `"int64"`.

    Input shape:
        `(batch,)` or `(batch, 1)` string.

    Output shape:
        `(batch, sequence_length)` integer ids.

    Raises:
        ValueError: `preset` is not a local directory holding
            `tokenizer.json`, `sequence_length` is below 2 (`3` with a start
            and an end token) or above the preset's `max_sequence_length`,
            or a float `dtype`.
        ImportError: KerasHub is not installed.

    Examples:
        >>> tokenizer = PresetTokenizer("./bert_tiny_en_uncased", 8)
        >>> ids = np.asarray(tokenizer(np.array(["The dress fits", ""])))
        >>> ids[1].tolist(), tokenizer.padding_id  # [CLS], [SEP], padding
        ([101, 102, 0, 0, 0, 0, 0, 0], 0)
    """

    def __init__(self, preset=None, sequence_length=None, tokenizer=None,
                 packer=None, **kwargs):
        kwargs["dtype"] = kwargs.get("dtype") or "int32"
        super().__init__(**kwargs)
        if "int" not in self.compute_dtype:
            raise ValueError(f"dtype must be an integer dtype such as 'int32'. "
                             f"Received: dtype={self.compute_dtype!r}")
        # Strings stay TensorFlow strings (as in KerasHub's layers), and
        # string ops do not compile with XLA.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.supports_jit = False
        hub = keras_hub()
        self.preset = None if preset is None else str(preset)
        if tokenizer is None:
            self.preset = _check_preset(preset, "tokenizer.json")
            tokenizer = hub.tokenizers.Tokenizer.from_preset(self.preset)
            longest = _preset_max_sequence_length(self.preset)
            if sequence_length is None:
                sequence_length = longest
            elif longest is not None and int(sequence_length) > longest:
                raise ValueError(
                    f"sequence_length must be at most the preset's "
                    f"max_sequence_length ({longest}). Received: "
                    f"sequence_length={sequence_length}")
        elif isinstance(tokenizer, dict):
            tokenizer = saving.deserialize_keras_object(tokenizer)
        if isinstance(packer, dict):
            packer = saving.deserialize_keras_object(packer)
        elif packer is None:
            if sequence_length is None:
                raise ValueError("sequence_length is required: the preset does "
                                 "not give a max_sequence_length.")
            pad = getattr(tokenizer, "pad_token_id", None)
            packer = hub.layers.StartEndPacker(
                sequence_length=int(sequence_length),
                start_value=getattr(tokenizer, "start_token_id", None),
                end_value=getattr(tokenizer, "end_token_id", None),
                pad_value=0 if pad is None else int(pad),
                name="packer")
        special = len(packer.start_value or ()) + len(packer.end_value or ())
        if packer.sequence_length < special + 1:
            raise ValueError(f"sequence_length must leave room for one token "
                             f"beside the start and end tokens, at least "
                             f"{special + 1}. Received: "
                             f"sequence_length={packer.sequence_length}")
        self.tokenizer = tokenizer
        self.packer = packer
        self.sequence_length = int(packer.sequence_length)
        self._eager_tokenize = None

    @property
    def padding_id(self):
        """int. The id that pads each text to `sequence_length`."""
        return int(self.packer.pad_value)

    def build(self, input_shape):
        self.built = True

    def _tokenize(self, texts):
        import tensorflow as tf

        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if texts.shape.rank == 2:
            texts = tf.squeeze(texts, axis=-1)
        ids = self.packer(self.tokenizer(texts))
        return tf.cast(ids, self.compute_dtype)

    def call(self, inputs):
        import tensorflow as tf

        if not tf.executing_eagerly():
            return self._tokenize(inputs)
        # Eagerly KerasHub would take its pure Python path; the TensorFlow
        # ops give the ids of the model and of the export.
        if self._eager_tokenize is None:
            self._eager_tokenize = tf.function(
                self._tokenize,
                input_signature=[tf.TensorSpec([None], tf.string)])
        texts = tf.reshape(tf.convert_to_tensor(inputs, dtype=tf.string), [-1])
        return self._eager_tokenize(texts)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs.shape[0], self.sequence_length),
                                 dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.sequence_length)

    def get_config(self):
        return {**super().get_config(), "preset": self.preset,
                "sequence_length": self.sequence_length,
                "tokenizer": saving.serialize_keras_object(self.tokenizer),
                "packer": saving.serialize_keras_object(self.packer)}


@saving.register_keras_serializable(package="kmtl")
class PresetTextEncoder(layers.Layer):
    """Token ids to one vector per row with a pretrained KerasHub backbone
    (BERT: Devlin et al., "BERT: Pre-training of Deep Bidirectional
    Transformers for Language Understanding", NAACL 2019, arXiv:1810.04805),
    read from a local preset directory and fine-tuned with the model.

    The backbone (`keras_hub.models.Backbone.from_preset(preset,
    load_weights=True)`) reads `{"token_ids": ids, "padding_mask": ids !=
    padding_id}` (and `segment_ids` of zeros where it takes them); its token
    vectors are pooled by their mean over the tokens that are not padding
    (`pooling="mean"`), or its pooled output (`"cls"`: BERT's `[CLS]` vector
    through a dense tanh layer; the first token's vector for a backbone
    without one). Padding never changes a row's vector. With the mean, the
    backbone layers it does not read (BERT's pooled dense layer) are frozen,
    so that every trainable weight gets a gradient.

    The config holds the backbone's serialized config, not the preset path,
    and the weights are saved with the model: a `.keras` file loads without
    the preset directory. All the weights are the backbone's; pass
    `trainable=False` to freeze them (a feature extractor). KerasHub is
    imported when the layer is created; the layer is registered with kmtl,
    so a `.keras` file loads without `custom_objects`.

    Args:
        preset: str or None. A local preset directory holding `config.json`
            and `model.weights.h5` (see Raises); read when `backbone` is None,
            and kept in the config as a record.
        backbone: a KerasHub text backbone, its serialized config, or None
            (load it from `preset`).
        pooling: str, one of `PRESET_POOLINGS`: `"mean"` (default) or
            `"cls"`.
        padding_id: int or None. The id of padding (`PresetTokenizer`'s
            `padding_id`). None: the preset tokenizer's, or 0 without a
            preset tokenizer.

    Input shape:
        `(batch, sequence_length)` integer token ids, at most the backbone's
        `max_sequence_length` of them.

    Output shape:
        `(batch, hidden_dim)`.

    Raises:
        ValueError: `preset` is not a local directory holding `config.json`,
            neither `preset` nor `backbone`, an unknown pooling, a backbone
            input other than token ids, padding mask and segment ids, or
            (when built) more ids than `max_sequence_length`.
        ImportError: KerasHub is not installed.

    Examples:
        >>> encoder = PresetTextEncoder("./bert_tiny_en_uncased")
        >>> tuple(encoder(np.array([[101, 1996, 102, 0, 0, 0]])).shape)
        (1, 128)
    """

    def __init__(self, preset=None, backbone=None, pooling="mean",
                 padding_id=None, **kwargs):
        super().__init__(**kwargs)
        if pooling not in PRESET_POOLINGS:
            raise ValueError(f"pooling must be one of {PRESET_POOLINGS}. "
                             f"Received: pooling={pooling!r}")
        hub = keras_hub()
        self.preset = None if preset is None else str(preset)
        if backbone is None:
            if preset is None:
                raise ValueError("Pass a local preset directory (preset=...) or "
                                 "a KerasHub backbone (backbone=...).")
            self.preset = _check_preset(preset, "config.json")
            backbone = hub.models.Backbone.from_preset(self.preset,
                                                       load_weights=True)
            if padding_id is None and os.path.isfile(
                    os.path.join(self.preset, "tokenizer.json")):
                tokenizer = hub.tokenizers.Tokenizer.from_preset(self.preset)
                padding_id = getattr(tokenizer, "pad_token_id", None)
        elif isinstance(backbone, dict):
            backbone = saving.deserialize_keras_object(backbone)
        inputs = set(backbone.input) if isinstance(backbone.input, dict) else {}
        other = inputs - {"token_ids", "padding_mask", "segment_ids"}
        if not {"token_ids", "padding_mask"} <= inputs or other:
            raise ValueError(
                f"The backbone must take token_ids and padding_mask (and "
                f"optionally segment_ids), as KerasHub's text backbones do. "
                f"Received: {type(backbone).__name__} with inputs "
                f"{sorted(inputs)}")
        self.backbone = backbone
        self.pooling = pooling
        self.padding_id = 0 if padding_id is None else int(padding_id)
        self._segments = "segment_ids" in inputs
        outputs = backbone.output
        sequence = (outputs["sequence_output"] if isinstance(outputs, dict)
                    else outputs)
        self.hidden_dim = int(sequence.shape[-1])
        if pooling == "mean" and isinstance(outputs, dict):
            # Freeze what the mean does not read (BERT's pooled dense layer),
            # so that no trainable weight is left without a gradient.
            used = {id(layer) for layer in keras.Model(backbone.input,
                                                       sequence).layers}
            for layer in backbone.layers:
                if id(layer) not in used:
                    layer.trainable = False
        self.max_sequence_length = getattr(backbone, "max_sequence_length", None)
        self.mean = SequencePooling("mean", dtype=self.dtype_policy,
                                    name="mean_pooling")

    def build(self, input_shape):
        length = input_shape[-1]
        if (self.max_sequence_length is not None and length is not None
                and length > self.max_sequence_length):
            raise ValueError(
                f"The backbone reads at most max_sequence_length="
                f"{self.max_sequence_length} ids per text. Received "
                f"sequences of {length}: lower the tokenizer's "
                f"sequence_length.")
        self.built = True

    def call(self, inputs, training=None):
        ids = ops.cast(inputs, "int32")
        mask = ops.not_equal(ids, self.padding_id)
        features = {"token_ids": ids, "padding_mask": mask}
        if self._segments:
            features["segment_ids"] = ops.zeros_like(ids)
        outputs = self.backbone(features, training=training)
        if not isinstance(outputs, dict):
            outputs = {"sequence_output": outputs}
        if self.pooling == "mean":
            return self.mean(outputs["sequence_output"], mask=mask)
        if "pooled_output" in outputs:
            return outputs["pooled_output"]
        return outputs["sequence_output"][:, 0, :]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_dim)

    def get_config(self):
        return {**super().get_config(), "preset": self.preset,
                "backbone": saving.serialize_keras_object(self.backbone),
                "pooling": self.pooling, "padding_id": self.padding_id}
