"""Every registered task type through the shared test (`task_type_case.py`):
config round trip, labels and weights by hand, decode, head layout, `.keras`
round trip and masking."""

import pytest
from task_type_case import EXAMPLES
from task_type_case import run_task_type_test

import kmtl


@pytest.mark.parametrize("name", kmtl.tasks.list_task_types())
def test_task_type(name, tmp_path):
    run_task_type_test(name, tmp_path)


def test_the_built_in_types_are_registered():
    assert kmtl.tasks.list_task_types() == ["binary", "multiclass", "multilabel",
                                            "regression"]
    assert set(EXAMPLES) == set(kmtl.tasks.list_task_types())
