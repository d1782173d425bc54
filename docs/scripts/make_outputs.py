"""Writes the shown outputs of the documentation into docs/snippets/*.txt.

Run from the repository root: `.venv/bin/python docs/scripts/make_outputs.py
[NAME ...]` (every output without a name). Each output comes from running the
command or the code it shows, in a fresh temporary directory that links
`examples/`; the temporary directory's path is shown as `…`. Two sources:

- the commands below (`COMMANDS`): `kmtl train`, refused configs, an example
  script;
- every ```python block of docs/**/*.md that is directly followed by a block
  holding only `--8<-- "docs/snippets/<name>.txt"`: the block runs (after the
  blocks it continues, for `{.python continuation}`) and its standard output
  becomes `<name>.txt`. A block that names `fixture:census_dir` gets the
  Census-Income folder as `census_dir`, and is left as it is without the files.

The pages include these files with `--8<--`; README.md holds copies, which
docs/scripts/test_snippets.py compares with the files.
"""

import glob
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SNIPPETS = os.path.join(REPO, "docs", "snippets")
BIN = os.path.dirname(sys.executable)


def _run(command, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return result.stdout, result.stderr, result.returncode


def _clean(text, tmp):
    lines = [line.rstrip() for line in text.replace(tmp, "…").splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def _tail_from(text, start):
    """The lines of `text` from the first one that starts with `start`."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    return "\n".join(lines[first:])


def penguins_train(tmp):
    """`kmtl train examples/penguins.yaml`: the table and paths printed at the end."""
    os.symlink(os.path.join(REPO, "examples"), os.path.join(tmp, "examples"))
    out, err, code = _run([os.path.join(BIN, "kmtl"), "train",
                           "examples/penguins.yaml"], tmp)
    if code:
        raise RuntimeError(err)
    return _tail_from(out, "     split")


def census_train(tmp):
    """`kmtl train examples/census_income.yaml`: the table printed at the end
    (None without the Census-Income files)."""
    census = _census_dir()
    if census is None:
        return None
    os.symlink(os.path.join(REPO, "examples"), os.path.join(tmp, "examples"))
    out, err, code = _run([os.path.join(BIN, "kmtl"), "train",
                           "examples/census_income.yaml", "--data-dir", census], tmp)
    if code:
        raise RuntimeError(err)
    table = _tail_from(out, "     split").splitlines()
    return "\n".join(line for line in table if not line.startswith(
        ("SavedModel", "TensorBoard", "Run directory")))


def config_errors(tmp):
    """Two refused configs: `kmtl train bad.yaml` and `--epochs 0`."""
    os.symlink(os.path.join(REPO, "examples"), os.path.join(tmp, "examples"))
    with open(os.path.join(tmp, "bad.yaml"), "w") as f:
        f.write("tasks: [{name: species, type: multiclass}]\n"
                "data: {dataset: penguins}\n"
                "training: {epochs: true, learning_rate: fast}\n")
    shown = []
    for args in (["bad.yaml"], ["examples/penguins.yaml", "--epochs", "0"]):
        _, err, code = _run([os.path.join(BIN, "kmtl"), "train", *args], tmp)
        error = _tail_from(err, "kmtl train:").strip()
        shown.append(f"$ kmtl train {' '.join(args)}\n{error}\n$ echo $?\n{code}")
    return "\n".join(shown)


def data_error(tmp):
    """A table with a label outside the declared classes."""
    code = ("import kmtl\n"
            "frame = kmtl.datasets.load_penguins()\n"
            "frame.loc[0, 'species'] = 'Emperor'\n"
            "frame.to_csv('penguins.csv', index=False)\n")
    _run([sys.executable, "-c", code], tmp)
    with open(os.path.join(tmp, "emperor.yaml"), "w") as f:
        f.write("data: {train: penguins.csv, split: {method: random}}\n"
                "tasks:\n"
                "  - {name: species, type: multiclass,"
                " classes: [Adelie, Chinstrap, Gentoo]}\n")
    _, err, code = _run([os.path.join(BIN, "kmtl"), "train", "emperor.yaml"], tmp)
    return _tail_from(err, "kmtl train:")


def multi_input_digits(tmp):
    """`examples/multi_input_digits.py`: per-task test metrics and the paths."""
    out, err, code = _run([sys.executable, os.path.join(REPO, "examples",
                                                        "multi_input_digits.py")], tmp)
    if code:
        raise RuntimeError(err)
    return re.sub(r"/tmp/kmtl-digits-\w+", "…", out)


COMMANDS = {f.__name__: f for f in (penguins_train, census_train, config_errors,
                                    data_error, multi_input_digits)}

FENCE = re.compile(r"^(`{3,})([^\n`]*)\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INCLUDE = re.compile(r'^--8<-- "docs/snippets/([\w.-]+)\.txt"\n$')


def _info(info):
    """`python`, `{.python continuation}` -> ("python", {"continuation"})."""
    words = info.strip().strip("{}").split()
    lang = next((w.lstrip(".") for w in words if w.startswith(".")),
                words[0] if words else "")
    return lang, {w for w in words if not w.startswith(".") and w != lang}


def page_blocks():
    """`{name: (page, code, fixtures)}` for every python block of the pages
    followed by an include of docs/snippets/<name>.txt."""
    found = {}
    pages = sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
    for page in pages:
        if os.sep + "reference" + os.sep in page:
            continue
        with open(page, encoding="utf-8") as f:
            text = f.read()
        fences = list(FENCE.finditer(text))
        chain = ""
        for fence, following in zip(fences, fences[1:] + [None]):
            lang, options = _info(fence.group(2))
            if lang != "python":
                continue
            chain = (chain if "continuation" in options else "") + fence.group(3)
            between = text[fence.end():following.start()] if following else "x"
            include = INCLUDE.match(following.group(3)) if following else None
            if include and not between.strip():
                fixtures = {o.split(":", 1)[1] for o in options
                            if o.startswith("fixture:")}
                found[include.group(1)] = (os.path.relpath(page, REPO), chain,
                                           fixtures)
    return found


def _census_dir():
    folder = os.environ.get("KMTL_DATA_DIR") or os.path.join(
        REPO, "..", "shared", "data", "census-income")
    files = ("census-income.data.gz", "census-income.test.gz")
    if all(os.path.isfile(os.path.join(folder, f)) for f in files):
        return os.path.abspath(folder)
    return None


def run_block(code, fixtures, tmp):
    prelude = ""
    if "census_dir" in fixtures:
        census = _census_dir()
        if census is None:
            return None
        prelude = f"census_dir = {census!r}\n"
    os.symlink(os.path.join(REPO, "examples"), os.path.join(tmp, "examples"))
    with open(os.path.join(tmp, "block.py"), "w") as f:
        f.write(prelude + code)
    out, err, code = _run([sys.executable, "block.py"], tmp)
    if code:
        raise RuntimeError(err)
    return out


def main(names):
    blocks = page_blocks()
    for name in names or [*COMMANDS, *blocks]:
        with tempfile.TemporaryDirectory(prefix="kmtl-docs-") as tmp:
            tmp = os.path.realpath(tmp)
            if name in COMMANDS:
                text = COMMANDS[name](tmp)
            else:
                text = run_block(*blocks[name][1:], tmp)
            if text is None:
                print(f"{name}: skipped (no Census-Income files)")
                continue
            text = _clean(text, tmp)
        path = os.path.join(SNIPPETS, f"{name}.txt")
        with open(path, "w") as f:
            f.write(text)
        print(f"{os.path.relpath(path, REPO)}: {len(text.splitlines())} lines")


if __name__ == "__main__":
    main(sys.argv[1:])
