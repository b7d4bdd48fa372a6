"""fromzero.data.html and .web: readable text from HTML, and careful downloads.

Every URL points at a throw-away HTTP server on 127.0.0.1 started by these tests; nothing
here touches the internet.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fromzero.data import extract_text_from_html, fetch_url, fetch_url_text
from fromzero.errors import InputError, OfflineError

ARTICLE = """<!DOCTYPE html>
<html><head><title>Site title</title><style>p { color: red }</style>
<script>var tracking = "do not keep";</script></head>
<body>
<header><a href="/">Home</a> | <a href="/about">About</a></header>
<nav><ul><li>Menu one</li><li>Menu two</li></ul></nav>
<main>
  <h1>The   water
      cycle</h1>
  <p>The sun warms the sea and water <b>evaporates</b>.<br>It rises as vapour.</p>
  <p>Vapour cools into clouds &amp; falls as rain.</p>
  <ul><li>Evaporation</li><li>Condensation</li></ul>
  <form><input name="q"><button>Search</button></form>
  <!-- an editor's comment -->
  <div hidden>hidden text</div>
</main>
<aside>Advertisement</aside>
<footer>Copyright 2024</footer>
<script>alert("bye")</script>
</body></html>
"""
EXPECTED = (
    "The water cycle\n\n"
    "The sun warms the sea and water evaporates.\nIt rises as vapour.\n\n"
    "Vapour cools into clouds & falls as rain.\n\n"
    "- Evaporation\n- Condensation"
)
NO_TEXT = "<html><head><script>x()</script></head><body><nav>Home</nav><footer>(c)</footer></body></html>"


def test_extracts_headings_paragraphs_and_lists_and_drops_the_rest():
    assert extract_text_from_html(ARTICLE) == EXPECTED
    assert extract_text_from_html(ARTICLE.encode("utf-8")) == EXPECTED


def test_bytes_are_decoded_with_the_declared_charset():
    page = '<html><head><meta charset="windows-1252"></head><body><p>Caf\xe9 na\xefve</p></body></html>'
    assert extract_text_from_html(page.encode("cp1252")) == "Caf\u00e9 na\u00efve"


def test_page_without_readable_text_is_a_clear_error():
    with pytest.raises(InputError, match="no.html has no readable text"):
        extract_text_from_html(NO_TEXT, source="no.html")


def test_broken_markup_still_gives_its_text():
    assert extract_text_from_html("<p>unclosed <b>bold <i>italic</p></div></span><td>cell") == "unclosed bold italic\n\ncell"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/!-&;#=\"' abpscriptdiv\n\x00\u00e9")), max_size=120))
def test_random_markup_never_crashes(markup):
    try:
        text = extract_text_from_html(markup)
    except InputError:
        return
    assert text and text == text.strip()


class _Handler(BaseHTTPRequestHandler):
    """Routes of the local test server."""

    routes = {
        "/article.html": (200, "text/html; charset=utf-8", ARTICLE.encode("utf-8")),
        "/notes.txt": (200, "text/plain; charset=utf-8", "  Plain   notes.\r\nSecond line.\n".encode("utf-8")),
        "/empty.html": (200, "text/html", NO_TEXT.encode("utf-8")),
        "/image.png": (200, "application/octet-stream", b"\x89PNG\r\n\x1a\n\x00\x00"),
        "/big.txt": (200, "text/plain", b"word " * 5000),
    }

    def do_GET(self):  # noqa: N802 (the name http.server expects)
        if self.path == "/slow":
            time.sleep(2.0)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/article.html")
            self.end_headers()
            return
        status, content_type, body = self.routes.get(self.path, (404, "text/html", b"<p>not found</p>"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    """Base URL of an HTTP server on 127.0.0.1 serving the routes above."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/page.html"


def test_fetch_html_page(server):
    assert fetch_url_text(f"{server}/article.html") == EXPECTED


def test_fetch_plain_text_is_cleaned(server):
    assert fetch_url_text(f"{server}/notes.txt") == "Plain notes.\nSecond line."


def test_redirect_is_followed(server):
    page = fetch_url(f"{server}/moved")
    assert page.url.endswith("/article.html") and page.content_type == "text/html"


@pytest.mark.parametrize(
    ("path", "error", "words"),
    [
        ("/missing", InputError, "HTTP 404"),
        ("/image.png", InputError, "application/octet-stream, not an HTML or plain-text page"),
        ("/empty.html", InputError, "no readable text"),
    ],
)
def test_bad_pages_give_one_line_errors(server, path, error, words):
    with pytest.raises(error, match=words) as info:
        fetch_url_text(server + path)
    assert "\n" not in str(info.value)


def test_size_cap(server):
    assert len(fetch_url(f"{server}/big.txt", max_bytes=25_000).body) == 25_000
    with pytest.raises(InputError, match="larger than the 24,999-byte limit"):
        fetch_url(f"{server}/big.txt", max_bytes=24_999)


def test_slow_server_times_out(server):
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="did not answer within 0.3 s"):
        fetch_url_text(f"{server}/slow", timeout=0.3)
    assert time.perf_counter() - start < 1.5


def test_unreachable_url_is_offline_error(closed_port_url):
    with pytest.raises(OfflineError, match="cannot reach") as info:
        fetch_url_text(closed_port_url, timeout=2)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "words"),
    [("file:///etc/hostname", "not an http"), ("http://[bad", "not a valid URL"), ("http://a b.org/", "not a valid URL")],
)
def test_invalid_urls_are_input_errors(url, words):
    with pytest.raises(InputError, match=words):
        fetch_url(url)
