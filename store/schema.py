"""The tables Baobab keeps: a schema version row, threads, their leases, checkpoints and writes; search runs and
their nodes.

A checkpoint is the state after one super-step. It stores a full snapshot only now and then; the
writes of its step (the node updates, as the nodes returned them) are the delta, so a thread whose
state grows does not write its whole state at every step. A search run's tree is one row per node,
rewritten when the node changes (visits, value, children). Spans time what a run did (nodes, agents,
model and tool calls) for the trace viewer.

A database of an older version is brought up to this one when it is opened (`baobab.store.Store`): the tables it
has get the columns added since (`ADDED_COLUMNS`, each nullable so existing rows stay valid), then the version.
"""

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table, Text

SCHEMA_VERSION = 2
# version -> the (table, column) pairs it added to tables that older databases already have
ADDED_COLUMNS: dict[int, list[tuple[str, str]]] = {2: [("threads", "fingerprint"), ("search_runs", "states")]}

metadata = MetaData()

schema_info = Table(
    "baobab_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

threads = Table(
    "threads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("graph", String(255), nullable=False),
    # running | interrupted | error | done | pending (forked, not started)
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=True),  # JSON: the interrupt or the error that stopped the run
    Column("forked_from", Integer, nullable=True),  # checkpoint id; no FK, the two tables refer to each other
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    # JSON: the state class its rows were written with (baobab.graphs.fingerprint); None: before version 2
    Column("fingerprint", Text, nullable=True),
)

thread_leases = Table(  # who runs a thread: readers tell a live run from one whose process died (kill -9)
    "thread_leases",
    metadata,
    Column("thread", Integer, ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True),
    Column("host", String(255), nullable=False),  # the owner's host name
    Column("machine", String(255), nullable=True),  # boot id and pid namespace: where its pid means it; None: unknown
    Column("pid", Integer, nullable=False),
    Column("started", BigInteger, nullable=True),  # the process's start (clock ticks after boot): a reused pid differs
    Column("heartbeat", Float, nullable=False),  # refreshed by each committed step and every few seconds between
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("thread", Integer, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("parent", Integer, ForeignKey("checkpoints.id"), nullable=True),
    Column("pending", Text, nullable=False),  # JSON: the tasks of the next step and join progress
    Column("snapshot", Text, nullable=True),  # JSON of the whole state, on some checkpoints only
    Column("created", Float, nullable=False),
    Index("ix_checkpoints_thread_step", "thread", "step", unique=True),
)

writes = Table(
    "writes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("thread", Integer, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("task", Integer, nullable=False),
    Column("node", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # update | error
    Column("data", Text, nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_writes_thread_step", "thread", "step"),
)

search_runs = Table(
    "search_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("strategy", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # running | done | error
    Column("options", Text, nullable=False),  # JSON: the seed and the strategy's options
    Column("spent", Text, nullable=False),  # JSON: model calls, usage and seconds so far
    Column("result", Text, nullable=True),  # JSON: why the search stopped, once it has
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    # "checkpoints": node states and actions are checkpoint ids (a graph search), which pruning keeps;
    # "values": anything else; None: recorded before version 2, so possibly checkpoints
    Column("states", String(16), nullable=True),
)

search_nodes = Table(
    "search_nodes",
    metadata,
    Column("run", Integer, ForeignKey("search_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("node", Integer, primary_key=True),
    Column("parent", Integer, nullable=True),
    Column("data", Text, nullable=False),  # JSON: the whole node (search.tree.Node.to_dict())
)

task_results = Table(  # a call's result, committed once under its key: a retried call reads it back (executors)
    "task_results",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("data", Text, nullable=False),  # JSON
    Column("created", Float, nullable=False),
)

spans = Table(
    "spans",
    metadata,
    # random 52-bit ids, made by the writer so that children can name parents before either is written; an
    # INTEGER key is SQLite's rowid (no second index) and 52 bits stay exact in the viewer's JavaScript
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("run", String(300), nullable=False),  # thread:<name> | search:<name> | agent:<id>: what the UI lists
    Column("parent", BigInteger, nullable=True),
    Column("kind", String(16), nullable=False),  # run | node | agent | model | tool | search
    Column("name", String(255), nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float, nullable=True),  # None while the span is open (a run in progress)
    Column("status", String(16), nullable=False),  # running | ok | error | interrupted
    Column("error", Text, nullable=True),
    Column("attrs", Text, nullable=False),  # JSON: model, tokens, drafted/accepted, tool arguments and result...
    Index("ix_spans_run_started", "run", "started"),
)

memory_notes = Table(
    "memory_notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(255), nullable=False),  # global | team:<name> | agent:<name>
    Column("content", Text, nullable=False),
    Column("keywords", Text, nullable=False),  # JSON list
    Column("tags", Text, nullable=False),  # JSON list
    Column("context", Text, nullable=False),
    Column("meta", Text, nullable=False),  # JSON object
    Column("timestamp", Float, nullable=False),
    Column("version", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # float32, L2-normalised
    Column("updated", Float, nullable=False),
    Column("writer", String(32), nullable=False),  # the Memory object that wrote it last: others reload it
    Index("ix_memory_notes_updated_writer", "updated", "writer"),  # a refresh skips its own rows within the index
)

memory_links = Table(
    "memory_links",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", Integer, ForeignKey("memory_notes.id", ondelete="CASCADE"), nullable=False),
    Column("target", Integer, ForeignKey("memory_notes.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),  # supports | contradicts | elaborates | same-topic | similar
    Column("reason", Text, nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_memory_links_source", "source"),
    Index("ix_memory_links_target", "target", "id"),  # the newest links to a note, without reading them all
)

memory_versions = Table(
    "memory_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("note", Integer, ForeignKey("memory_notes.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("data", Text, nullable=False),  # JSON: content, keywords, tags, context, metadata of that version
    Column("reason", Text, nullable=False),  # why it was replaced: evolved by note N, updated, reverted
    Column("created", Float, nullable=False),
    Index("ix_memory_versions_note", "note", "version", unique=True),
)

router_rewards = Table(  # what learning routers observed: append-only, so processes sharing a router never race
    "router_rewards",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("router", String(255), nullable=False),
    Column("arm", String(255), nullable=False),
    Column("features", Text, nullable=False),  # JSON list of floats
    Column("reward", Float, nullable=False),
    Column("thread", String(255), nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_router_rewards_router", "router", "id"),
)
