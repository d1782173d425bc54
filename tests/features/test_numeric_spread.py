"""Regression tests found by the fuzz tests (tests/fuzz): numeric features
whose values are finite in float32 but whose sum or variance are not. The
mean overflowed to inf (every encoded value NaN) or the variance to inf
(every encoded value 0: the feature silently ignored)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from kmtl.errors import DataError
from kmtl.features import Feature
from kmtl.features import encode_frame


@pytest.mark.parametrize("values", [[3e38, 3e38, 1.0], [3e38, -3e38, 0.0],
                                    [1e20, -1e20, 0.0]])
def test_a_spread_beyond_float32_is_a_data_error(values):
    frame = pd.DataFrame({"big x": values})
    with pytest.raises(DataError, match=r"Feature 'big x': its values \(from "
                                        r".* to .*\) spread too widely for "
                                        r"float32.* Rescale the column"):
        Feature("big x", "numeric").fit(frame)


def test_large_values_within_float32_are_normalized_exactly():
    # The sum 6e38 overflowed float32: mean inf and NaN encodings before.
    frame = pd.DataFrame({"x": [3e38, 3e38, np.nan]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        feature = Feature("x", "numeric").fit(frame)
        encoded = encode_frame([feature], frame)["encoded:numeric"]
    assert feature.mean == pytest.approx(3e38) and feature.variance == 1.0
    np.testing.assert_array_equal(encoded[:2, 0], [0.0, 0.0])
    assert np.isnan(encoded[2, 0])


def test_the_largest_spread_float32_holds():
    # Variance 3.24e38 < 3.4e38: kept, and the values encode to -1 and 1.
    frame = pd.DataFrame({"x": [1.8e19, -1.8e19]})
    feature = Feature("x", "numeric").fit(frame)
    assert feature.variance == pytest.approx(3.24e38, rel=1e-6)
    np.testing.assert_allclose(encode_frame([feature], frame)["encoded:numeric"]
                               [:, 0], [1.0, -1.0], rtol=1e-6)


def test_a_value_too_far_from_training_to_normalize_is_a_data_error():
    # Fitted on [0, 1], 3e38 normalized is 1e39: inf in float32, and the
    # model's predictions for the row were NaN.
    feature = Feature("x", "numeric").fit(
        pd.DataFrame({"x": np.linspace(0.0, 1.0, 50)}))
    frame = pd.DataFrame({"x": [0.5, np.nan, 3e38, 1e37]})
    with pytest.raises(DataError, match=r"Feature 'x': 1 value\(s\) are too far "
                                        r"from the training values to normalize "
                                        r"in float32, first in row 2: 3\.0000"):
        encode_frame([feature], frame)
    encoded = encode_frame([feature], frame.drop(index=2))["encoded:numeric"]
    assert np.isfinite(encoded[[0, 2], 0]).all() and np.isnan(encoded[1, 0])
