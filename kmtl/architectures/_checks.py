"""Argument checks shared by the architecture layers."""


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
    if not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{argument} must be a positive integer. Received: {argument}={value!r}"
        )
    return value


def check_rate(value, argument):
    if not 0 <= value < 1:
        raise ValueError(
            f"{argument} must be in [0, 1). Received: {argument}={value!r}"
        )
    return float(value)
