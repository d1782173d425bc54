"""The copies in README.md and docs/**/*.md equal the files they copy.

A fenced block right after a line `<!-- snippet: PATH -->` must hold exactly the
text of PATH (relative to the repository root): a config from examples/, or an
output that docs/scripts/make_outputs.py wrote into docs/snippets/. The site's
pages include those files with `--8<--`; README.md, read on GitHub, needs copies.
"""

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = re.compile(r"^<!-- snippet: (\S+) -->\n(`{3,})[^\n]*\n(.*?)^\2$",
                    re.MULTILINE | re.DOTALL)
PAGES = ["README.md", *sorted(
    os.path.relpath(p, REPO)
    for p in glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))]


def _copies():
    for page in PAGES:
        with open(os.path.join(REPO, page), encoding="utf-8") as f:
            text = f.read()
        for match in MARKER.finditer(text):
            yield pytest.param(page, match.group(1), match.group(3),
                               id=f"{page}:{match.group(1)}")


def test_readme_has_copies():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        copied = {m.group(1) for m in MARKER.finditer(f.read())}
    assert {"docs/snippets/penguins_train.txt", "docs/snippets/penguins_python.py",
            "docs/snippets/penguins_python.txt"} <= copied


@pytest.mark.parametrize("page,path,copy", list(_copies()))
def test_copy_equals_file(page, path, copy):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        original = f.read()
    assert copy == original, (
        f"{page}: the block after <!-- snippet: {path} --> differs from {path}. "
        f"Copy the file into the page (after `python docs/scripts/make_outputs.py` "
        f"for an output).")
