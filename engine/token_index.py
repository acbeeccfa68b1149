"""Where each recent n-gram of some token documents occurred, to retrieve what followed it there.

The retrieval behind model-free drafting (prompt lookup, SuffixDecoding): for the end of the current text,
find earlier places that end the same way, longest first, and read what came next. Grams of lengths 1, 2,
4, ..., 32 are indexed, each keeping its most recent positions; a match found through a gram is extended
backwards to its true length (up to 64 tokens).
"""

from dataclasses import dataclass, field

ORDERS = (32, 16, 8, 4, 2, 1)  # gram lengths indexed, longest first
RECENT = 8  # positions kept per gram: the most recent ones
LONGEST = 64  # matches are measured up to this length


@dataclass(frozen=True)
class Match:
    """An earlier place whose text ends like the query: the continuation starts at `doc`[`at`]."""

    doc: int
    at: int
    length: int


@dataclass
class TokenIndex:
    """N-gram positions over documents of tokens that grow at their end, within `capacity` tokens.

    Grams are keyed by their hash (a collision only shortens a match, which is measured on the tokens).

    >>> index = TokenIndex(capacity=1000)
    >>> index.extend(0, [1, 2, 3, 4, 1, 2])
    >>> [(m.at, m.length) for m in index.matches([9, 1, 2])]
    [(2, 2)]
    """

    capacity: int = 200_000
    docs: dict[int, list[int]] = field(default_factory=dict)
    grams: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # gram hash -> (doc, end), oldest first
    size: int = 0

    def extend(self, doc: int, tokens: list[int]) -> None:
        """Append tokens to a document (a new id starts one), indexing the grams they end."""
        text = self.docs.setdefault(doc, [])
        for token in tokens:
            text.append(token)
            end = len(text)
            for key in _gram_keys(text, end):
                places = self.grams.setdefault(key, [])
                places.append((doc, end))
                if len(places) > 2 * RECENT:
                    del places[:-RECENT]
        self.size += len(tokens)
        while self.size > self.capacity and len(self.docs) > 1:  # forget the oldest documents
            self.forget(next(iter(self.docs)))

    def forget(self, doc: int) -> None:
        """Drop a document and its grams."""
        text = self.docs.pop(doc, [])
        self.size -= len(text)
        for end in range(1, len(text) + 1):
            for key in _gram_keys(text, end):
                places = self.grams.get(key)
                if places is not None:
                    places[:] = [p for p in places if p[0] != doc]
                    if not places:
                        del self.grams[key]

    def matches(self, context: list[int], limit: int = RECENT) -> list[Match]:
        """Earlier places whose text ends like `context`, with something after them; longest match first,
        then most recent."""
        for n in ORDERS:
            if n > len(context):
                continue
            places = self.grams.get(hash(tuple(context[-n:])), [])
            found = [Match(doc, end, self._length(self.docs[doc], end, context))
                     for doc, end in reversed(places[-RECENT:]) if end < len(self.docs[doc])]
            found = [m for m in found if m.length > 0]
            if found:
                found.sort(key=lambda m: -m.length)  # stable: recency breaks ties
                return found[:limit]
        return []

    def continuation(self, match: Match, length: int) -> list[int]:
        """Up to `length` tokens that followed a match."""
        return self.docs[match.doc][match.at:match.at + length]

    @staticmethod
    def _length(text: list[int], end: int, context: list[int]) -> int:
        n = 0
        while n < LONGEST and n < end and n < len(context) and text[end - 1 - n] == context[-1 - n]:
            n += 1
        return n


def _gram_keys(text: list[int], end: int) -> list[int]:
    """Hashes of the indexed grams of `text` that end at `end`."""
    return [hash(tuple(text[end - n:end])) for n in ORDERS if n <= end]
