"""A small Transformer encoder over token ids, from KerasHub's layers."""

from keras import layers
from keras import ops
from keras import saving

from kmtl.layers._keras_hub import keras_hub
from kmtl.layers.sequence_pooling import SequencePooling


@saving.register_keras_serializable(package="kmtl")
class TransformerTextEncoder(layers.Layer):
    """Token ids to one vector per row: token and position embeddings, a stack
    of Transformer encoder blocks (Vaswani et al., "Attention Is All You
    Need", NeurIPS 2017) and the mean over the tokens, trained from scratch.

    Built from KerasHub's `keras_hub.layers.TokenAndPositionEmbedding` and
    `keras_hub.layers.TransformerEncoder` (post-norm blocks, ReLU feed-forward
    layers); padding (id 0) is masked out of attention and of the mean, and
    an empty text gives a zero vector. KerasHub is imported when the layer is
    built, so a model without it does not need it; the layer is registered
    with kmtl, so a `.keras` file loads without `custom_objects`.

    Args:
        vocabulary_size: int. Ids are in `[0, vocabulary_size)`, 0 padding.
        sequence_length: int. The longest input (positions learned).
        embedding_dim: int. The width of the tokens' vectors and of the
            output, default 64.
        num_layers: int. Encoder blocks, default 2.
        num_heads: int. Attention heads per block, default 4; must divide
            `embedding_dim`.
        intermediate_dim: int or None. The feed-forward width, default
            `2 * embedding_dim`.
        dropout: float. Dropout inside the blocks, default 0.1.

    Input shape:
        `(batch, sequence_length)` integer token ids.

    Output shape:
        `(batch, embedding_dim)`.

    Raises:
        ValueError: `num_heads` does not divide `embedding_dim`, or a size
            below 1.
        ImportError: KerasHub is not installed.

    Examples:
        >>> encoder = TransformerTextEncoder(100, 8, embedding_dim=16, num_heads=2)
        >>> tuple(encoder(np.array([[5, 6, 7, 0, 0, 0, 0, 0]])).shape)
        (1, 16)
    """

    def __init__(self, vocabulary_size, sequence_length, embedding_dim=64,
                 num_layers=2, num_heads=4, intermediate_dim=None, dropout=0.1,
                 **kwargs):
        super().__init__(**kwargs)
        sizes = {"vocabulary_size": vocabulary_size,
                 "sequence_length": sequence_length,
                 "embedding_dim": embedding_dim, "num_layers": num_layers,
                 "num_heads": num_heads}
        for key, value in sizes.items():
            if int(value) < 1:
                raise ValueError(f"{key} must be at least 1. Received: "
                                 f"{key}={value!r}")
        if embedding_dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide embedding_dim "
                             f"({embedding_dim}).")
        self.vocabulary_size = int(vocabulary_size)
        self.sequence_length = int(sequence_length)
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim or 2 * embedding_dim)
        self.dropout = float(dropout)
        hub = keras_hub().layers
        self.embedding = hub.TokenAndPositionEmbedding(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            embedding_dim=self.embedding_dim,
            dtype=self.dtype_policy, name="token_and_position_embedding")
        self.blocks = [
            hub.TransformerEncoder(intermediate_dim=self.intermediate_dim,
                                   num_heads=self.num_heads, dropout=self.dropout,
                                   dtype=self.dtype_policy,
                                   name=f"transformer_encoder_{i}")
            for i in range(self.num_layers)
        ]
        self.pooling = SequencePooling("mean", dtype=self.dtype_policy,
                                       name="mean_pooling")

    def build(self, input_shape):
        self.embedding.build(input_shape)
        shape = (*input_shape, self.embedding_dim)
        for block in self.blocks:
            block.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        mask = ops.not_equal(inputs, 0)
        x = self.embedding(inputs)
        for block in self.blocks:
            x = block(x, padding_mask=mask, training=training)
        return self.pooling(x, mask=mask)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        return {**super().get_config(),
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout}
