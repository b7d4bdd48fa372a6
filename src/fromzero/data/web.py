"""Downloading a web page's text, carefully.

The network is the least reliable input there is, so every request has a timeout, an HTTP
status check, a content-type check (only ``text/html`` and ``text/plain`` are text we can use)
and a size cap (a mistaken link to a video must not fill the memory). Each failure becomes a
one-line :mod:`fromzero.errors` error: :class:`OfflineError` when the server cannot be reached
in time, :class:`InputError` when it answers with something we cannot use.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

from fromzero import __version__
from fromzero.data.settings import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT
from fromzero.errors import InputError, OfflineError

TEXT_CONTENT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")


@dataclass
class Page:
    """A downloaded page: its final URL (after redirects), content type, charset and body."""

    url: str
    content_type: str
    charset: str | None
    body: bytes


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> Page:
    """Download ``url`` (http or https) and check status, content type and size."""
    if not is_url(url):
        raise InputError(f"{url!r} is not an http:// or https:// URL")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"fromzero/{__version__}"})
    except ValueError as err:
        raise InputError(f"{url!r} is not a valid URL: {err}") from None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            headers: Message = response.headers
            content_type = headers.get_content_type()
            if content_type not in TEXT_CONTENT_TYPES:
                raise InputError(f"{url} is {content_type}, not an HTML or plain-text page")
            body = response.read(max_bytes + 1)
            final_url = response.geturl()
    except urllib.error.HTTPError as err:
        raise InputError(f"{url} answered HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, (TimeoutError, socket.timeout)):
            raise OfflineError(f"{url} did not answer within {timeout:g} s") from None
        raise OfflineError(f"cannot reach {url}: {err.reason}") from None
    except (TimeoutError, socket.timeout):
        raise OfflineError(f"{url} did not answer within {timeout:g} s") from None
    except http.client.InvalidURL as err:
        raise InputError(f"{url!r} is not a valid URL: {err}") from None
    except (OSError, http.client.HTTPException) as err:
        raise OfflineError(f"connection to {url} failed: {err}") from None
    if len(body) > max_bytes:
        raise InputError(f"{url} is larger than the {max_bytes:,}-byte limit")
    return Page(final_url, content_type, headers.get_content_charset(), body)
