"""A bag of tokens: token ids to one count, 0/1 or TF-IDF vector per row."""

import numpy as np
from keras import layers
from keras import ops
from keras import saving

BAG_VALUES = ("tf_idf", "count", "multi_hot")
"""What `TokenBag` puts in each vocabulary entry's column."""


@saving.register_keras_serializable(package="kmtl")
class TokenBag(layers.Layer):
    """The bag of tokens of each row: a vector over the vocabulary holding each
    token's count, a 0/1 for its presence, or its TF-IDF weight.

    Id 0 is padding and is never counted. With `values="tf_idf"` a token seen
    `c > 0` times in the row gets `(1 + ln c) * idf[token]` (sublinear term
    frequency), and the row is scaled to unit L2 norm: the weighting of
    scikit-learn's `TfidfVectorizer(sublinear_tf=True)` (Salton and Buckley,
    "Term-weighting approaches in automatic text retrieval", 1988). The idf
    weights are a non-trainable weight of the layer, saved with the model.

    Args:
        vocabulary_size: int. Ids are in `[0, vocabulary_size)`.
        values: str, one of `BAG_VALUES`: `"tf_idf"` (default), `"count"`
            or `"multi_hot"`.
        idf: array-like `(vocabulary_size,)` of float, or None (all 1). The
            inverse document frequencies, for `"tf_idf"`.
        normalize: bool or None. Scale each row to unit L2 norm (a row
            without tokens stays 0). Default: True for `"tf_idf"`, False
            otherwise.

    Input shape:
        `(batch, sequence_length)` integer token ids, 0 for padding.

    Output shape:
        `(batch, vocabulary_size)` float.

    Raises:
        ValueError: a vocabulary size below 2, an unknown `values`, or `idf`
            of another length.

    Examples:
        >>> TokenBag(4, values="count")(np.array([[2, 3, 2, 0]])).numpy().tolist()
        [[0.0, 0.0, 2.0, 1.0]]
    """

    def __init__(self, vocabulary_size, values="tf_idf", idf=None, normalize=None,
                 **kwargs):
        super().__init__(**kwargs)
        vocabulary_size = int(vocabulary_size)
        if vocabulary_size < 2:
            raise ValueError(f"vocabulary_size must be at least 2 (padding and one "
                             f"token). Received: vocabulary_size={vocabulary_size}")
        if values not in BAG_VALUES:
            raise ValueError(f"values must be one of {BAG_VALUES}. Received: "
                             f"values={values!r}")
        if idf is not None and np.shape(idf) != (vocabulary_size,):
            raise ValueError(f"idf must hold one weight per id, "
                             f"({vocabulary_size},). Received: shape "
                             f"{np.shape(idf)}")
        self.vocabulary_size = vocabulary_size
        self.values = values
        self.normalize = values == "tf_idf" if normalize is None else bool(normalize)
        self._initial_idf = idf
        self.idf = None
        if values == "tf_idf":
            initial = (np.ones(vocabulary_size, "float32") if idf is None
                       else np.asarray(idf, "float32"))
            self.idf = self.add_weight(
                name="idf", shape=(vocabulary_size,), trainable=False,
                initializer=lambda shape, dtype=None: ops.convert_to_tensor(
                    initial, dtype=dtype))
        self._not_padding = np.concatenate(
            [[0.0], np.ones(vocabulary_size - 1)]).astype("float32")

    def call(self, inputs):
        counts = ops.bincount(ops.cast(inputs, "int32"),
                              minlength=self.vocabulary_size)
        counts = ops.cast(counts, self.compute_dtype) * ops.cast(
            self._not_padding, self.compute_dtype)
        if self.values == "multi_hot":
            bag = ops.minimum(counts, 1.0)
        elif self.values == "count":
            bag = counts
        else:
            present = counts > 0
            term = ops.where(present, 1.0 + ops.log(ops.maximum(counts, 1.0)), 0.0)
            bag = term * ops.cast(self.idf, self.compute_dtype)
        if self.normalize:
            norm = ops.sqrt(ops.sum(ops.square(bag), axis=-1, keepdims=True))
            bag = bag / ops.maximum(norm, 1e-12)
        return bag

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.vocabulary_size)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "values": self.values, "normalize": self.normalize}
