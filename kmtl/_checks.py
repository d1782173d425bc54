"""Argument checks shared across kmtl: each returns the checked value or raises
a ValueError that names the argument and the value received."""

import math
import numbers
import os


def check_task_names(task_names):
    names = list(task_names)
    if not names or len(set(names)) != len(names):
        raise ValueError(
            f"task_names must be a non-empty list of distinct names. Received: "
            f"task_names={task_names!r}"
        )
    return names


def check_units(units, argument, allow_empty=False):
    values = [units] if isinstance(units, int) else list(units)
    if (not values and not allow_empty) or any(
        not isinstance(u, int) or u < 1 for u in values
    ):
        raise ValueError(
            f"{argument} must be a list of positive integers. Received: "
            f"{argument}={units!r}"
        )
    return tuple(values)


def check_positive_int(value, argument):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"{argument} must be a positive integer. Received: {argument}={value!r}"
        )
    return value


def check_float(value, argument, low=None, high=None, low_open=False,
                high_open=False):
    """`value` as a float if it is a finite real number (not a bool or a string) in the
    interval from `low` to `high` (None: unbounded; `*_open`: the bound
    excluded); else a ValueError naming `argument`, the interval and the value."""
    interval = (f"{'(' if low_open or low is None else '['}"
                f"{'-inf' if low is None else low}, "
                f"{'inf' if high is None else high}"
                f"{')' if high_open or high is None else ']'}")
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (
            (low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high)))
    if not ok:
        raise ValueError(f"{argument} must be a number in {interval}. Received: "
                         f"{argument}={value!r}")
    return value


def check_rate(value, argument):
    return check_float(value, argument, 0, 1, high_open=True)


def check_bool(value, argument):
    if not isinstance(value, bool):
        raise ValueError(f"{argument} must be true or false. Received: "
                         f"{argument}={value!r}")
    return value


FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32; a larger number becomes inf in a float32 tensor."""


def non_finite(values):
    """A boolean mask of the values that are numbers but not finite float32s:
    +-inf, or beyond +-`FLOAT32_MAX` (they become inf in the model). NaN (a
    missing value) is not flagged.

    Args:
        values: array-like of numbers (any float or int dtype).

    Returns:
        numpy bool array of the same shape.
    """
    import numpy as np

    values = np.asarray(values, dtype="float64")
    with np.errstate(invalid="ignore"):
        return ~np.isnan(values) & ~(np.abs(values) <= FLOAT32_MAX)


def process_alive(pid):
    """Whether a process with id `pid` (int) runs on this machine (a process
    of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
