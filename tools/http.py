"""The `http_get` tool: GET a URL on an allow-listed host (redirects followed only to allowed hosts)."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from baobab.tools.tool import Tool, ToolError, tool

MAX_REDIRECTS = 5
READ_SIZE = 65_536  # raw bytes read at a time, and what a coding layer hands on at a time
# the codings _Decoder undoes, as zlib window bits: gzip members, and deflate in its zlib wrapper (RFC 9110)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

if TYPE_CHECKING:
    import httpx


def http_get(allow_hosts: list[str], max_bytes: int = 1_000_000, timeout: float = 10.0) -> Tool:
    """A tool fetching http(s) URLs whose host is in `allow_hosts` ("*.example.com" allows its subdomains).

    `timeout` (seconds) bounds the whole fetch, redirects included; at most `max_bytes` of the decoded body are
    read, however far a compressed body would inflate.

    >>> http_get(["example.com"]).run_sync({"url": "https://other.org/"}).content
    "host 'other.org' is not allowed (allowed: example.com)"
    """
    import httpx  # imported here: 0.2 s that `import baobab.agents` (which lists the built-ins) would pay

    allowed = [host.lower() for host in allow_hosts]

    def check(url: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs can be fetched, not {url.scheme or 'a relative URL'!r}")
        host = url.host.lower()
        if not any(host == a or (a.startswith("*.") and host.endswith(a[1:])) for a in allowed):
            raise ToolError(f"host {host!r} is not allowed (allowed: {', '.join(allowed) or 'none'})")

    @tool(name="http_get", timeout=timeout)  # one deadline for the whole fetch: a slow drip cannot outlast it
    async def get(url: str) -> str:
        """Fetch a web page or API response with HTTP GET and return its status and text.

        Args:
            url: the full http:// or https:// URL.
        """
        target = httpx.URL(url)
        # only codings that _read undoes within max_bytes are asked for (httpx would add br and zstd if installed)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                     headers={"Accept-Encoding": "gzip, deflate"}) as client:
            for _ in range(MAX_REDIRECTS + 1):
                check(target)  # before every request, so a redirect cannot reach another host
                async with client.stream("GET", target) as response:
                    if response.is_redirect and "location" in response.headers:
                        target = target.join(response.headers["location"])
                        continue
                    body, cut = await _read(response, max_bytes)
                    text = body.decode(response.encoding or "utf-8", errors="replace")
                    note = f"\n... [cut at {max_bytes} bytes]" if cut else ""
                    report = f"HTTP {response.status_code} {response.reason_phrase}\n\n{text}{note}"
                    if response.is_error:
                        raise ToolError(report)
                    return report
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")

    return get


async def _read(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most max_bytes of the decoded body, and whether more was left unread.

    The raw bytes are decoded here, a piece at a time, rather than by httpx, which inflates each chunk whole
    before a size can be checked (2.6 KB of `gzip, gzip` is 3 GB).
    """
    codings = [c.strip().lower() for c in response.headers.get_list("content-encoding", split_commas=True)]
    decoder = _Decoder([c for c in codings if c], budget=max_bytes + READ_SIZE)
    body = bytearray()
    raw = 0
    async for chunk in response.aiter_raw(READ_SIZE):
        raw += len(chunk)
        body += decoder.feed(chunk, max_bytes + 1 - len(body))
        # a compressed body never needs much more raw bytes than it decodes to: spare the rest a read
        if len(body) > max_bytes or decoder.cut or raw > max_bytes + READ_SIZE:
            return bytes(body[:max_bytes]), True
    return bytes(body), False


class _Decoder:
    """Undoes a body's content codings (gzip, deflate, identity) one bounded piece at a time: no layer yields
    more than `budget` bytes in all, nor more than asked for at once.

    >>> import gzip
    >>> _Decoder(["gzip", "gzip"], budget=100).feed(gzip.compress(gzip.compress(b"x" * 10**6)), limit=5)
    b'xxxxx'
    """

    def __init__(self, codings: list[str], budget: int) -> None:
        unknown = [c for c in codings if c not in _WBITS and c != "identity"]
        if unknown:
            raise ToolError(f"the response's Content-Encoding {', '.join(codings)!r} cannot be decoded (gzip, "
                            f"deflate and identity can)")
        self.codings = [c for c in reversed(codings) if c != "identity"]  # the last coding applied comes off first
        self.inflaters = [zlib.decompressobj(_WBITS[c]) for c in self.codings]
        self.pending = [b""] * len(self.codings)  # the input each layer has not used yet
        self.left = [budget] * len(self.codings)  # how many more bytes each layer may yield
        self.cut = False  # a layer stopped at its budget with input left

    def feed(self, data: bytes, limit: int) -> bytes:
        """Up to `limit` decoded bytes, taking in `data`; fewer only once every layer has used all its input."""
        if not self.codings:
            return data
        self.pending[0] += data
        out = bytearray()
        while len(out) < limit and (piece := self._pull(len(self.codings) - 1, limit - len(out))):
            out += piece
        return bytes(out)

    def _pull(self, layer: int, limit: int) -> bytes:
        """Up to `limit` bytes out of `layer`, fed from the layer before it; b"" once all of them are used up."""
        while True:
            out = self._inflate(layer, limit)
            if out or layer == 0 or self.cut:
                return out
            more = self._pull(layer - 1, READ_SIZE)
            if not more:
                return b""
            self.pending[layer] += more

    def _inflate(self, layer: int, limit: int) -> bytes:
        """Up to `limit` bytes from `layer`'s pending input alone."""
        out = bytearray()
        while self.pending[layer] and len(out) < limit:
            if not self.left[layer]:
                self.cut = True
                break
            inflater = self.inflaters[layer]
            try:  # max_length > 0 here (0 would mean no bound)
                out += (piece := inflater.decompress(self.pending[layer], min(limit - len(out), self.left[layer])))
            except zlib.error as exc:
                raise ToolError(f"the response body is not valid {self.codings[layer]} data ({exc})") from None
            self.left[layer] -= len(piece)
            if inflater.eof:  # the end of one gzip member: another may follow (RFC 1952)
                self.pending[layer] = inflater.unused_data
                self.inflaters[layer] = zlib.decompressobj(_WBITS[self.codings[layer]])
            else:
                self.pending[layer] = inflater.unconsumed_tail
        return bytes(out)
