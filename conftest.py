"""Fixtures for the code blocks of README.md and docs/**/*.md.

`python -m pytest --markdown-docs --markdown-docs-syntax=superfences README.md docs/`
runs every ```python block (pytest-markdown-docs). Each block runs in a fresh
temporary working directory that links `examples/` from the repository, so a block
may read `examples/penguins.yaml` and write `penguins.keras` or `saved_models/`
without touching the repository. A plug-in a block registers (docs/extending.md)
is unregistered after the block. A block that needs the Census-Income files names
the `census_dir` fixture (`{.python fixture:census_dir}`) and is skipped without
them. The tests under tests/ have their own conftest and are not affected.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.abspath(__file__))

# `--markdown-docs` imports every .py file it is given to read its docstrings;
# docs/snippets holds example code that trains and writes files when imported.
collect_ignore_glob = ["docs/snippets/*.py"]
CENSUS_FILES = ("census-income.data.gz", "census-income.test.gz")


def _registries():
    from kmtl.architectures.base import ARCHITECTURES
    from kmtl.architectures.gates import GATES
    from kmtl.datasets.base import DATASETS
    from kmtl.features.base import FEATURE_KINDS
    from kmtl.tasks.base import TASK_TYPES
    from kmtl.weighting.base import WEIGHTINGS

    return (ARCHITECTURES, GATES, DATASETS, FEATURE_KINDS, TASK_TYPES, WEIGHTINGS)


@pytest.fixture(autouse=True)
def _markdown_block_sandbox(request):
    """For a markdown code block only: run in `tmp_path` (with `examples/` linked)
    and restore the plug-in registries afterwards. Other tests get nothing."""
    if request.node.get_closest_marker("markdown-docs") is None:
        yield
        return
    tmp_path = request.getfixturevalue("tmp_path")
    monkeypatch = request.getfixturevalue("monkeypatch")
    os.symlink(os.path.join(REPO, "examples"), tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    registries = _registries()
    saved = [dict(registry._classes) for registry in registries]
    try:
        yield
    finally:
        for registry, classes in zip(registries, saved):
            registry._classes.clear()
            registry._classes.update(classes)


@pytest.fixture(scope="session")
def census_dir():
    """The folder holding the Census-Income files; skips when they are absent
    (the same look-up as tests/conftest.py: KMTL_DATA_DIR, else
    ../shared/data/census-income)."""
    folder = os.environ.get("KMTL_DATA_DIR") or os.path.join(
        REPO, "..", "shared", "data", "census-income")
    for candidate in (folder, os.path.join(folder, "census-income")):
        if all(os.path.isfile(os.path.join(candidate, f)) for f in CENSUS_FILES):
            return os.path.abspath(candidate)
    pytest.skip(f"Census-Income files {CENSUS_FILES} not found in {folder}")
