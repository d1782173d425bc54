import keras
import numpy as np
import pytest

from kmtl.layers import StackedEmbedding


def test_output_equals_one_embedding_per_feature():
    layer = StackedEmbedding([3, 5, 2], 4)
    inputs = [np.array([[0], [2]]), np.array([[4], [1]]), np.array([[1], [0]])]
    out = keras.ops.convert_to_numpy(layer(inputs))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    assert table.shape == (10, 4)
    # Feature i's rows start after the sizes of the features before it: 0, 3, 8.
    expected = np.concatenate(
        [table[[0, 2]], table[[3 + 4, 3 + 1]], table[[8 + 1, 8 + 0]]], axis=1)
    np.testing.assert_array_equal(out, expected)
    assert out.shape == (2, 12)


def test_config_round_trip_and_weight_count():
    layer = StackedEmbedding([3, 5], 2, name="emb")
    layer([np.zeros((1, 1), "int64"), np.zeros((1, 1), "int64")])
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == (3 + 5) * 2
    clone = StackedEmbedding.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("dims,size", [([], 2), ([3, 0], 2), ([3], 0)])
def test_bad_sizes(dims, size):
    with pytest.raises(ValueError, match="Received: input_dims"):
        StackedEmbedding(dims, size)
