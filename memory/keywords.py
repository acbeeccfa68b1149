"""Keywords without a model: the most frequent content words of a text (the cheap mode of note building)."""

import re
from collections import Counter

_STOP_TEXT = """
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yourself yourselves also yes okay oh yeah really
like get got one two
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*[a-z0-9]|[a-z0-9]")


def words(text: str) -> list[str]:
    """Lower-case words of `text` without stop words.

    >>> words("The cat sat on the mat")
    ['cat', 'sat', 'mat']
    """
    return [w for w in WORD.findall(text.lower()) if w not in STOP_WORDS]


def keywords(text: str, k: int = 6) -> list[str]:
    """Up to `k` content words, most frequent first (ties: first seen).

    >>> keywords("Rust is fast. Rust is safe; safe code is good code.", 3)
    ['rust', 'safe', 'code']
    """
    counts = Counter(w for w in words(text) if len(w) > 2)
    return [w for w, _ in counts.most_common(k)]
