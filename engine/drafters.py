"""Model-free drafters: propose a token tree to follow a sequence, retrieved from text seen before.

SuffixDecoding (Snowflake) is the model: agents, retries and search expansions repeat themselves, so the
longest earlier match of a sequence's recent tokens predicts what comes next. Sources, most local first:
the request's own prompt and output, its siblings (the other samples of one prompt: search expansions,
best-of-n), and a bounded global history of earlier outputs. Continuations of several matches merge into a
tree whose nodes are scored by how often they followed and by the running acceptance rate of drafts
retrieved with a match of that length (short matches guess worse: the scheduler then drafts less or not),
kept apart for greedy and for sampled sequences (a sample follows a repeated text far less often), and scaled
for each sequence by how its own drafts fared against that (an agent's tool loop repeats twice as often as its
class predicts, an open chat question a third less often).
Prompt lookup is the same drafter limited to the request, one chain of fixed length.
"""

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from baobab.engine.token_index import Match, TokenIndex

Source = Literal["request", "siblings", "global"]
SOURCES: tuple[Source, ...] = ("request", "siblings", "global")
CONTEXT = 64  # tokens of a sequence's end that are matched
LENGTH_CLASSES = 7  # acceptance is tracked for match lengths 1, 2-3, 4-7, ..., 64 and more
PRIOR = 0.5  # acceptance assumed before any draft of a class was verified
OWN_PRIOR = 8.0  # tries' worth of belief that a sequence accepts as its class does, before its own tries count
MOST_LIKELY = 0.95  # no drafted token is scored surer than this


@dataclass
class Draft:
    """A token tree to follow a sequence's last token: node i is `tokens[i]`, a child of node `parents[i]`
    (-1: of the last token), with `scores[i]` the estimated chance that it is accepted. Parents come first."""

    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    match: int = 0  # length of the match it was retrieved with
    sampled: bool = False  # drafted for a sampled sequence (its acceptance is learnt apart)
    forced: int = 0  # depth of the chain from the root that a grammar forces (not retrieved: not learnt from)

    def __len__(self) -> int:
        return len(self.tokens)

    def best(self, count: int) -> "Draft":
        """The `count` best-scored nodes, still a tree: a child never outscores its parent, and comes later."""
        return self.keep(sorted(sorted(range(len(self)), key=lambda i: (-self.scores[i], i))[:count]))

    def chain(self) -> "Draft":
        """The path from the root that takes the best-scored child at every node: what a verify step checks (a
        token's keys sit at its position, so the model sees exactly what plain decoding would).

        >>> Draft([7, 8, 5, 9], [-1, 0, -1, 2], [0.5, 0.25, 0.6, 0.1]).chain().tokens
        [5, 9]
        """
        best: dict[int, int] = {}  # a node's best child; parents come first, so the first of equals wins
        for node, parent in enumerate(self.parents):
            if parent not in best or self.scores[node] > self.scores[best[parent]]:
                best[parent] = node
        nodes = [best[-1]] if -1 in best else []
        while nodes[-1:] and nodes[-1] in best:
            nodes.append(best[nodes[-1]])
        return self.keep(nodes)

    def keep(self, nodes: list[int]) -> "Draft":
        """The tree of `nodes` (ascending, each one's parent among them), numbered anew."""
        place = {node: i for i, node in enumerate(nodes)}
        parents = [-1 if self.parents[i] < 0 else place[self.parents[i]] for i in nodes]
        forced = next((i for i in range(self.forced) if i not in place), self.forced)  # what is left of the chain
        return Draft([self.tokens[i] for i in nodes], parents, [self.scores[i] for i in nodes], self.match,
                     self.sampled, forced)

    def with_forced(self, chain: list[int]) -> "Draft":
        """This tree with `chain` (tokens a grammar forces next) merged in from the root as its first nodes,
        scored 1: certain, unless the model spells the forced text with other tokens.

        >>> merged = Draft([7, 8, 5], [-1, 0, -1], [0.5, 0.25, 0.4]).with_forced([7, 9])
        >>> merged.tokens, merged.parents, merged.scores
        ([7, 9, 8, 5], [-1, 0, 0, -1], [1.0, 1.0, 0.25, 0.4])
        """
        place: dict[int, int] = {}  # old index -> new, for nodes on the chain
        node = -1
        for depth, token in enumerate(chain):
            node = next((i for i in range(len(self)) if self.parents[i] == node and self.tokens[i] == token), -2)
            if node < 0:
                break
            place[node] = depth
        rest = [i for i in range(len(self)) if i not in place]
        place |= {old: len(chain) + i for i, old in enumerate(rest)}
        parents = [-1 if self.parents[i] < 0 else place[self.parents[i]] for i in rest]
        return Draft(chain + [self.tokens[i] for i in rest], list(range(-1, len(chain) - 1)) + parents,
                     [1.0] * len(chain) + [self.scores[i] for i in rest], self.match, self.sampled, len(chain))


@runtime_checkable
class Drafter(Protocol):
    """What the scheduler asks of a drafter, always on its engine thread, for sequences keyed by an int.

    >>> isinstance(SuffixDrafter(), Drafter)
    True
    """

    def prepare(self) -> None:
        """Once, before the first sequence: load what drafting needs (a draft model's weights)."""

    def begin(self, key: int, group: int, prompt: list[int], *, sampled: bool = False) -> None:
        """A sequence starts (siblings share `group`; `sampled`: not greedy)."""

    def extend(self, key: int, tokens: list[int]) -> None:
        """Tokens the sequence has committed."""

    def end(self, key: int, output: list[int]) -> None:
        """The sequence finished with `output`."""

    def observe(self, key: int, draft: Draft, tries: int, accepted: int) -> None:
        """After verifying sequence `key`'s `draft`: `tries` drafted tokens were compared with the model's choice,
        `accepted` matched."""

    def draft(self, key: int, budget: int) -> Draft:
        """Up to `budget` nodes to verify after the sequence's last token, best first."""
        ...

    def __contains__(self, key: int) -> bool:
        """Whether sequence `key` has begun and not ended."""
        ...


@dataclass
class _Sequence:
    group: int
    tokens: list[int]
    sampled: bool
    expected: float = 0.0  # tokens its class's acceptance predicted over its tries so far,
    accepted: int = 0  # and how many were accepted

    @property
    def calibration(self) -> float:
        """How much likelier than its class this sequence's drafts are accepted (1 until it has tried some)."""
        return (self.accepted + OWN_PRIOR) / (self.expected + OWN_PRIOR)


class SuffixDrafter:
    """Drafts by retrieval from `sources`; as a tree of up to `max_nodes`, or (`tree=False`) one chain of
    `chain_length` tokens, which with sources=("request",) is prompt lookup.

    >>> drafter = SuffixDrafter()
    >>> drafter.begin(key=1, group=1, prompt=[5, 6, 7, 8, 5, 6])
    >>> drafter.draft(1, budget=4).tokens
    [7, 8, 5, 6]
    """

    def __init__(self, sources: tuple[Source, ...] = SOURCES, *, tree: bool = True, max_nodes: int = 32,
                 chain_length: int = 10, history_tokens: int = 200_000) -> None:
        unknown = set(sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"drafter sources must be among {SOURCES}, got {sorted(unknown)}")
        self.sources, self.tree, self.max_nodes, self.chain_length = sources, tree, max_nodes, chain_length
        self.history = TokenIndex(capacity=history_tokens)
        self.sequences: dict[int, _Sequence] = {}
        self.requests: dict[int, TokenIndex] = {}
        self.groups: dict[int, TokenIndex] = {}
        # for greedy and for sampled sequences, per match-length class: the running chance that a drafted token
        # whose parent was accepted is accepted too
        self.acceptance = {sampled: [PRIOR] * LENGTH_CLASSES for sampled in (False, True)}

    def prepare(self) -> None:
        """Nothing to load: retrieval needs no weights."""

    def __contains__(self, key: int) -> bool:
        return key in self.sequences

    def begin(self, key: int, group: int, prompt: list[int], *, sampled: bool = False) -> None:
        """A sequence starts: index its prompt (siblings share `group`; `sampled`: not greedy)."""
        self.sequences[key] = _Sequence(group, list(prompt), sampled)
        # drift back towards the prior, so a class no longer drafted (too poor) is tried again in a while
        for rates in self.acceptance.values():
            rates[:] = [a + 0.05 * (PRIOR - a) for a in rates]
        if "request" in self.sources:
            index = self.requests[key] = TokenIndex(capacity=1 << 62)
            index.extend(0, prompt)
        self.groups.setdefault(group, TokenIndex(capacity=1 << 62))

    def extend(self, key: int, tokens: list[int]) -> None:
        """Tokens the sequence has committed."""
        seq = self.sequences[key]
        seq.tokens.extend(tokens)
        if key in self.requests:
            self.requests[key].extend(0, tokens)
        if "siblings" in self.sources:
            self.groups[seq.group].extend(key, tokens)

    def end(self, key: int, output: list[int]) -> None:
        """The sequence finished: its output joins the global history."""
        seq = self.sequences.pop(key)
        self.requests.pop(key, None)
        if "global" in self.sources and output:
            self.history.extend(key, output)
        if not any(s.group == seq.group for s in self.sequences.values()):
            self.groups.pop(seq.group, None)

    def observe(self, key: int, draft: Draft, tries: int, accepted: int) -> None:
        """After verifying sequence `key`'s `draft`: `tries` drafted tokens were compared with the model's choice,
        `accepted` matched."""
        if tries:
            weight, rates, at = min(1.0, tries / 16), self.acceptance[draft.sampled], _class(draft.match)
            if key in self.sequences:
                self.sequences[key].expected += tries * rates[at]
                self.sequences[key].accepted += accepted
            rates[at] += weight * 0.25 * (accepted / tries - rates[at])

    def draft(self, key: int, budget: int) -> Draft:
        """Up to `budget` nodes to verify after the sequence's last token, best first."""
        seq = self.sequences[key]
        context = seq.tokens[-CONTEXT:]
        best: tuple[TokenIndex, list[Match]] | None = None
        for source in self.sources:
            for index in self._indexes(source, key, seq.group):
                found = [m for m in index.matches(context) if not (index is self.groups.get(seq.group)
                                                                   and m.doc == key)]
                if found and (best is None or found[0].length > best[1][0].length):
                    best = (index, found)
        if best is None or budget <= 0:
            return Draft()
        index, matches = best
        length = matches[0].length
        acceptance = min(MOST_LIKELY, self.acceptance[seq.sampled][_class(length)] * seq.calibration)
        if not self.tree:
            chain = index.continuation(matches[0], min(budget, self.chain_length))
            scores = [acceptance ** (depth + 1) for depth in range(len(chain))]
            return Draft(chain, list(range(-1, len(chain) - 1)), scores, length, seq.sampled)
        depth = min(budget, self.max_nodes, 2 * length + 2)  # a long match earns a long guess
        tree = _tree([index.continuation(m, depth) for m in matches], acceptance, length, seq.sampled)
        return tree.best(min(budget, self.max_nodes))

    def _indexes(self, source: Source, key: int, group: int) -> list[TokenIndex]:
        if source == "request":
            return [self.requests[key]] if key in self.requests else []
        if source == "siblings":
            return [self.groups[group]] if group in self.groups else []
        return [self.history]


def _class(length: int) -> int:
    return min(max(length, 1).bit_length(), LENGTH_CLASSES) - 1


def _tree(continuations: list[list[int]], acceptance: float, match: int, sampled: bool) -> Draft:
    """Merge continuations into a trie; score each node by the share of continuations through it times the
    running acceptance per level."""
    children: list[dict[int, int]] = [{}]  # node 0 is the root (the sequence's last token)
    counts, tokens, parents, depths = [len(continuations)], [-1], [-1], [0]
    for chain in continuations:
        node = 0
        for token in chain:
            child = children[node].get(token)
            if child is None:
                child = len(tokens)
                children[node][token] = child
                children.append({})
                counts.append(0)
                tokens.append(token)
                parents.append(node)
                depths.append(depths[node] + 1)
            counts[child] += 1
            node = child
    return Draft(tokens[1:], [p - 1 for p in parents[1:]],
                 [counts[i] / counts[0] * acceptance ** depths[i] for i in range(1, len(tokens))], match, sampled)
