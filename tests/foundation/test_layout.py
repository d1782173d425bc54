"""The package's own rules of layout, checked on its source."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kmtl"


def test_keras_internals_are_imported_in_one_module_only():
    # Private Keras names change between releases: every use goes through
    # kmtl/_keras_internals.py, which gives the reason for each.
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if path.name != "_keras_internals.py"
                 and "keras.src" in path.read_text()]
    assert offenders == []
    assert "keras.src" in (PACKAGE / "_keras_internals.py").read_text()
