"""OpenTelemetry export: a recorded run's spans replayed, with their own times and nesting, to any OTel SDK
tracer provider (`pip install 'baobab[otel]'`; add the OTLP exporter to reach Jaeger, Tempo, Honeycomb...)."""

import json
from typing import Any

from baobab.store import Store
from baobab.ui.data import NotFound, run_spans


def export_otel(store: Store, run: str, provider: Any = None) -> int:
    """Send the spans of `run` (`thread:NAME`, `search:NAME`, `agent:ID`) to `provider` (default: the global
    tracer provider); the number of spans sent. Open spans (a run in progress) are sent as ending now.

    >>> from opentelemetry.sdk.trace import TracerProvider  # doctest: +SKIP
    >>> export_otel(Store(), "thread:t1", TracerProvider())  # doctest: +SKIP
    """
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    found = run_spans(store, run)
    if not found:
        raise NotFound(f"no spans recorded for run {run!r}")
    tracer = (provider or trace.get_tracer_provider()).get_tracer("baobab")
    made: dict[str, Any] = {}
    for span in found:  # oldest first, so a parent is made before its children
        parent = made.get(span["parent"]) if span["parent"] else None
        context = trace.set_span_in_context(parent) if parent is not None else None
        attributes = {"baobab.run": run, "baobab.kind": span["kind"], **_flat(span["attrs"])}
        otel = tracer.start_span(f"{span['kind']} {span['name']}", context=context, attributes=attributes,
                                 start_time=int(span["started"] * 1e9))
        if span["status"] == "error":
            otel.set_status(Status(StatusCode.ERROR, span["error"] or ""))
        made[span["id"]] = otel
    for span in reversed(found):
        made[span["id"]].end(end_time=int(span["ended"] * 1e9) if span["ended"] is not None else None)
    return len(found)


def _flat(attrs: dict[str, Any], prefix: str = "baobab.") -> dict[str, Any]:
    """OTel attributes are scalars (or lists of them): nested values become dotted keys or JSON text."""
    flat: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, str | bool | int | float):
            flat[prefix + key] = value
        elif value is not None:
            flat[prefix + key] = json.dumps(value, default=repr)
    return flat
