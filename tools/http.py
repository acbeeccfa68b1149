"""The `http_get` tool: GET a URL on an allow-listed host (redirects followed only to allowed hosts)."""

import httpx

from baobab.tools.tool import Tool, ToolError, tool

MAX_REDIRECTS = 5


def http_get(allow_hosts: list[str], max_bytes: int = 1_000_000, timeout: float = 10.0) -> Tool:
    """A tool fetching http(s) URLs whose host is in `allow_hosts` ("*.example.com" allows its subdomains).

    >>> http_get(["example.com"]).run_sync({"url": "https://other.org/"}).content
    "host 'other.org' is not allowed (allowed: example.com)"
    """
    allowed = [host.lower() for host in allow_hosts]

    def check(url: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs can be fetched, not {url.scheme or 'a relative URL'!r}")
        host = url.host.lower()
        if not any(host == a or (a.startswith("*.") and host.endswith(a[1:])) for a in allowed):
            raise ToolError(f"host {host!r} is not allowed (allowed: {', '.join(allowed) or 'none'})")

    @tool(name="http_get", timeout=timeout * (MAX_REDIRECTS + 1))
    async def get(url: str) -> str:
        """Fetch a web page or API response with HTTP GET and return its status and text.

        Args:
            url: the full http:// or https:// URL.
        """
        target = httpx.URL(url)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
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
    """At most max_bytes of the body, and whether more was left unread."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            return bytes(body[:max_bytes]), True
    return bytes(body), False
