"""Checks on what a model writes about a note. Repeated text: the same clause twice, a phrase run back to back
("fails fails fails"), the same item twice in a list (a small model decoding greedily loops; these find and
remove it). Grounding: how much of a text's words the notes it describes hold (a small model also copies labels
from its prompt, "tags: I was swa", or words from nowhere)."""

import re
from collections.abc import Iterable

from baobab.memory.keywords import words

CLAUSE = re.compile(r"[^.!?;,\n]+[.!?;,\n]*")  # a clause and the punctuation that ends it
WORD = re.compile(r"[^\W_]+")  # letters and digits: 'fails_fails' is two words, as a reader sees it
LIST = re.compile(r"[,;]")  # between the items of a list written into one string
JSON_MARKS = re.compile(r"[{}\[\]\"]")
SEPARATOR = re.compile(r"[_\-/]")  # joins words in one token ('build_server', 'lgbtq-support'): split them


def key(text: str) -> str:
    """What two pieces of text share when they say the same thing: their words, lower-cased.

    >>> key("Disk full!") == key("disk  FULL")
    True
    """
    return " ".join(w.lower() for w in WORD.findall(text))


def first_repeat(text: str) -> tuple[int, int] | None:
    """The span of the first repeated piece of `text` (a clause said before, or the second of two back-to-back
    copies of a phrase), or None when nothing repeats.

    >>> text = "Disk full. Disk full."
    >>> first_repeat(text), first_repeat("fails fails"), first_repeat("the disk filled")
    ((10, 21), (5, 11), None)
    """
    seen: set[str] = set()
    for clause in CLAUSE.finditer(text):
        said = key(clause.group())
        if said and said in seen:
            return clause.start(), clause.end()
        seen.add(said)
    words = list(WORD.finditer(text))
    lowered = [w.group().lower() for w in words]
    for start in range(len(words)):
        for n in range(1, (len(words) - start) // 2 + 1):
            if lowered[start] == lowered[start + n] and lowered[start:start + n] == lowered[start + n:start + 2 * n]:
                return words[start + n - 1].end(), words[start + 2 * n - 1].end()
    return None


def without_repeats(text: str) -> str:
    """`text` with every repeated piece removed (see `first_repeat`), and the JSON brackets a looping model leaks
    into its strings, trimmed of dangling separators.

    >>> without_repeats("Build server. Build server. Build server.")
    'Build server.'
    >>> without_repeats("deploy_on_Friday_failed_fails_fails_fails"), without_repeats("How are you?}, {")
    ('deploy_on_Friday_failed_fails', 'How are you?')
    """
    text = JSON_MARKS.sub("", text)
    while (span := first_repeat(text)) is not None:
        text = text[:span[0]] + text[span[1]:]
    return text.strip().rstrip(",;").strip()


def distinct(items: Iterable[str], most: int, chars: int) -> list[str]:
    """Up to `most` items, each without repeats and cut to `chars` at a word boundary, dropping empty ones and
    any that says what an earlier one said; an item that lists several ("Lemonade, Lemon") counts as several.

    >>> distinct(["Disk", "disk ", "", "docker images docker images", "disk, build server"], most=3, chars=24)
    ['Disk', 'docker images', 'build server']
    """
    kept: dict[str, str] = {}
    for item in (part for listed in items for part in LIST.split(listed)):
        cleaned = clip(without_repeats(item), chars)
        if key(cleaned) and key(cleaned) not in kept:
            kept[key(cleaned)] = cleaned
    return list(kept.values())[:most]


def clip(text: str, chars: int) -> str:
    """`text` cut to at most `chars` characters, at the last word boundary when there is one.

    >>> clip("the build server filled up", 18)
    'the build server'
    """
    text = text.strip()
    if len(text) <= chars:
        return text
    cut = text[:chars + 1].rsplit(None, 1)[0] if " " in text[:chars + 1] else text[:chars]
    return cut[:chars].rstrip(" ,;")


def grounding(text: str, source: str) -> float:
    """The share of `text`'s content words that `source` holds (1.0 when it has none): words match on their first
    five letters, so that "inspiring" is found in "inspired".

    >>> grounding("inspiring support", "The stories inspired me"), grounding("tags: Lemonade", "Hey Mel!")
    (0.5, 0.0)
    """
    held = {w[:5] for w in words(SEPARATOR.sub(" ", source))}
    found = [w[:5] in held for w in words(SEPARATOR.sub(" ", text))]
    return sum(found) / len(found) if found else 1.0
