"""Names that TensorFlow and Keras take as they are, made from any text (column
names, labels): the one rule behind feature input names
(`kmtl.features.input_name`) and per-column metric names
(`kmtl.tasks.metrics.column_suffix`), so a column reads the same in both."""

import re
import unicodedata

# A name kept as it is: an ASCII letter, then ASCII letters, digits and `_`.
VALID_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Letters that Unicode does not decompose into an ASCII letter and a mark.
_TRANSLITERATIONS = str.maketrans({
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d",
    "Ð": "D", "þ": "th", "Þ": "Th", "ı": "i",
})


def ascii_name(text):
    """`text` as ASCII letters, digits and `_`.

    A text that already is an ASCII letter followed by ASCII letters, digits
    and `_` (`VALID_NAME`) is kept as it is. In any other, letters with
    accents lose them (`île` -> `ile`), a few letters are transliterated
    (`ß` -> `ss`, `æ` -> `ae`, `ø` -> `o`), a letter of another script becomes
    its code point (`収` -> `u53ce`), every run of other characters becomes
    one `_`, and leading and trailing `_` are dropped. The result may be
    empty (`"?!"`) or start with a digit (`"2nd home"` -> `2nd_home`); callers
    decide what to do then.

    Args:
        text: str, or anything `str` takes.

    Returns:
        str.

    Examples:
        >>> [ascii_name(t) for t in ["island", "bill length (mm)", "Größe"]]
        ['island', 'bill_length_mm', 'Grosse']
    """
    text = str(text)
    if VALID_NAME.fullmatch(text):
        return text
    characters = []
    for character in unicodedata.normalize(
            "NFKD", text.translate(_TRANSLITERATIONS)):
        if unicodedata.combining(character):
            continue
        if character.isascii() and character.isalnum():
            characters.append(character)
        elif character.isalnum():
            characters.append(f"_u{ord(character):04x}_")
        else:
            characters.append("_")
    return re.sub("_+", "_", "".join(characters)).strip("_")
