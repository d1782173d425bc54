"""The input side of a kmtl model: raw feature inputs and their preprocessing.

Preprocessing lives in the model, so a saved or exported model takes raw values:
numbers (NaN for missing) and strings or integer codes. Each feature kind owns
its part (`kmtl.features.NumericFeature.preprocess`, ...):

- numeric features are concatenated, normalized with a `keras.layers.Normalization`
  holding the training mean and variance, and passed through `ImputeMissing`
  (a NaN becomes the training mean, plus a 0/1 missing indicator);
- each categorical feature goes through a `StringLookup` / `IntegerLookup` with
  its training vocabulary and one out-of-vocabulary index (unseen categories
  share it), then an embedding (default; features with the same embedding size
  share one `StackedEmbedding` table) or a one-hot encoding.

Inputs that are not table columns (an image, a sequence) go through an
*encoder*: any Keras model or layer (a small CNN, a pretrained backbone). Each
gets its own named input of the encoder's input shape; its output is flattened
and concatenated with the tabular encoding (see `encoder_inputs`,
`encode_inputs`).
"""

import keras

from kmtl.errors import ConfigError
from kmtl.features.base import by_kind as _by_kind


def feature_inputs(features):
    """One `keras.Input` of shape `(batch, 1)` per feature, keyed and named by
    the feature's `input_name` (its column name when that is a valid name; see
    `kmtl.features.input_name`)."""
    return {
        f.input_name: keras.Input(shape=(1,), dtype=f.dtype, name=f.input_name)
        for f in features
    }


def _encoder_input_shape(name, encoder, declared):
    """The shape (without batch) of the one input `encoder` takes."""
    known = None
    if isinstance(encoder, keras.Model):
        try:
            model_inputs = encoder.inputs
        except AttributeError:
            model_inputs = None
        if model_inputs:
            if len(model_inputs) != 1:
                raise ConfigError(
                    f"encoders[{name!r}]: the model '{encoder.name}' takes "
                    f"{len(model_inputs)} inputs; an encoder takes one. Give each "
                    f"input its own encoder."
                )
            known = tuple(model_inputs[0].shape[1:])
    if declared is None:
        if known is None:
            raise ConfigError(
                f"encoders[{name!r}]: the input shape of "
                f"{type(encoder).__name__} '{encoder.name}' is unknown (a layer, or "
                f"a model built without keras.Input). Declare it, e.g. "
                f"input_shapes={{{name!r}: (8, 8, 1)}}, without the batch axis."
            )
        return known
    try:
        shape = tuple(None if d is None else int(d) for d in declared)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(d is not None and d < 1 for d in shape):
        raise ConfigError(
            f"input_shapes[{name!r}] must be a non-empty tuple of positive sizes "
            f"without the batch axis, e.g. (8, 8, 1). Received: {declared!r}"
        )
    if known is not None and shape != known:
        raise ConfigError(
            f"input_shapes[{name!r}]={shape} differs from the input shape {known} "
            f"of the model '{encoder.name}'. Drop the declaration or fix it."
        )
    return shape


def encoder_inputs(encoders, input_shapes=None):
    """One float32 `keras.Input` per encoder, named after its key.

    Args:
        encoders: dict `{input_name: keras.Model or keras.layers.Layer}`.
        input_shapes: dict `{input_name: shape}` (without the batch axis). Needed
            for an encoder whose input shape is unknown: a bare layer, or a model
            built without `keras.Input`.

    Returns:
        dict `{input_name: keras.Input of shape (batch, *shape)}`.

    Raises:
        ConfigError: an encoder that is not a Keras layer, an unknown input shape,
            a declared shape that differs from the model's, a model with several
            inputs, an encoder named like its input, or an `input_shapes` key
            without encoder.
    """
    input_shapes = dict(input_shapes or {})
    unknown = sorted(set(input_shapes) - set(encoders))
    if unknown:
        raise ConfigError(f"input_shapes names {unknown}, which have no encoder. "
                          f"Encoders: {sorted(encoders)}.")
    inputs = {}
    for name, encoder in encoders.items():
        if not isinstance(encoder, keras.layers.Layer):
            raise ConfigError(
                f"encoders[{name!r}] must be a keras.Model or keras.layers.Layer. "
                f"Received: {encoder!r}"
            )
        if encoder.name == name:
            raise ConfigError(
                f"encoders[{name!r}]: the encoder layer is named {name!r} like its "
                f"input, and layer names must be unique in a model. Rename the "
                f"encoder (e.g. name='{name}_encoder')."
            )
        shape = _encoder_input_shape(name, encoder, input_shapes.get(name))
        inputs[name] = keras.Input(shape=shape, dtype="float32", name=name)
    return inputs


def encode_inputs(encoders, inputs):
    """Each encoder applied to its input, flattened to `(batch, d)`.

    Raises:
        ConfigError: an encoder that returns several tensors, a vector per
            example, or an output of unknown size.
    """
    parts = []
    for name, encoder in encoders.items():
        x = encoder(inputs[name])
        if not hasattr(x, "shape") or len(x.shape) < 2:
            raise ConfigError(
                f"encoders[{name!r}] must return one tensor of shape (batch, ...). "
                f"Received: {x!r}"
            )
        if len(x.shape) > 2:
            x = keras.layers.Flatten(name=f"{name}_flatten")(x)
        if x.shape[-1] is None:
            raise ConfigError(
                f"encoders[{name!r}]: the output size is unknown (shape "
                f"{tuple(x.shape)}). End the encoder with a fixed-size layer such "
                f"as GlobalAveragePooling2D or declare a fixed input shape."
            )
        parts.append(x)
    return parts


def encode_features(features, inputs, **options):
    """Preprocesses raw inputs into the encoded blocks, and those into one
    `(batch, d)` float tensor.

    Each registered feature kind with features builds its fitted preprocessing
    (`Feature.preprocess`: raw inputs -> its encoded block) and its own layers
    on the block (`Feature.embed`); the kinds' outputs are concatenated in the
    order of their `position` (numeric, then categorical) as
    `encoded_features`.

    Args:
        features: list of fitted `kmtl.features.Feature`.
        inputs: dict of Keras inputs from `feature_inputs`.
        **options: the kinds' options: `categorical_encoding` (`"embedding"`
            or `"one_hot"`), `embedding_dim` (int or None), ...

    Returns:
        `(blocks, encoded)`: `{Feature.encoded_key(): block tensor}` and the
        `(batch, d)` tensor (None when `features` is empty).

    Raises:
        ConfigError: a bad option, or features that were not fitted.
    """
    blocks, parts = {}, []
    for kind, members in _by_kind(features):
        block = None
        if members:
            block = blocks[kind.encoded_key()] = kind.preprocess(members, inputs)
        parts.extend(kind.embed(members, block, **options))
    if len(parts) <= 1:
        return blocks, (parts[0] if parts else None)
    return blocks, keras.layers.Concatenate(name="encoded_features")(parts)


def find_blocks(model, features):
    """The encoded block tensors in `model`'s graph, found by the name of the
    layer that makes each (`Feature.block_layer`), or None for a graph without
    them (a model built by kmtl 0.2 or wired by hand).

    Returns:
        dict `{Feature.encoded_key(): KerasTensor}` or None.
    """
    blocks = {}
    for kind, members in _by_kind(features):
        if not members:
            continue
        try:
            layer = model.get_layer(kind.block_layer(members))
            blocks[kind.encoded_key()] = layer.output
        except (ValueError, AttributeError):
            return None
    return blocks
