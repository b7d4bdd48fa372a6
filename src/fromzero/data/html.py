"""Extracting the readable text of a web page.

A page is mostly not prose: scripts, styles, menus, headers, footers, sidebars and forms.
We parse it with BeautifulSoup (using Python's own lenient ``html.parser``, which accepts any
markup, however broken), delete the parts that are never content, and turn what remains into
plain text: one paragraph per block element (headings, paragraphs, list items, quotes, table
rows), list items as ``- item`` lines, and inline tags (``<b>``, ``<a>``...) merged into
their sentence.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, Doctype, NavigableString, ParserRejectedMarkup, ProcessingInstruction

from fromzero.data.cleaning import clean_text
from fromzero.data.settings import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT
from fromzero.data.web import fetch_url
from fromzero.errors import CorruptFileError, InputError

# Never content: code, styling, navigation, page chrome, forms and embedded objects.
DROPPED_TAGS = (
    "script", "style", "noscript", "template", "head", "nav", "header", "footer", "aside",
    "form", "button", "input", "select", "textarea", "iframe", "object", "embed", "svg",
    "canvas", "video", "audio", "map",
)  # fmt: skip
# Elements that start a new paragraph of text.
BLOCK_TAGS = (
    "p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
    "pre", "ul", "ol", "dl", "dt", "dd", "table", "tr", "figcaption", "caption", "hr", "address",
    "details", "summary", "body",
)  # fmt: skip
_WHITESPACE = re.compile(r"\s+")


def _drop_non_content(soup: BeautifulSoup) -> None:
    for node in soup.find_all(string=lambda s: isinstance(s, (Comment, Doctype, ProcessingInstruction))):
        node.extract()
    for tag in soup.find_all(DROPPED_TAGS):
        tag.decompose()
    hidden = soup.find_all(attrs={"hidden": True}) + soup.find_all(attrs={"aria-hidden": "true"})
    hidden += soup.find_all(attrs={"role": ("navigation", "banner", "contentinfo", "search")})
    for tag in hidden:
        if not tag.decomposed:
            tag.decompose()


def _mark_layout(soup: BeautifulSoup) -> None:
    """Replace HTML's layout by text: collapse source whitespace, then add the line breaks
    that block elements, list items and ``<br>`` stand for."""
    for node in soup.find_all(string=True):
        if isinstance(node, NavigableString) and node.find_parent("pre") is None:
            node.replace_with(_WHITESPACE.sub(" ", str(node)))
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for item in soup.find_all("li"):
        item.insert_before("\n- ")
    for cell in soup.find_all(("td", "th")):
        cell.insert_after(" ")
    for block in soup.find_all(BLOCK_TAGS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")


def extract_text_from_html(markup: str | bytes, source: str = "page") -> str:
    """The readable text of an HTML document, cleaned with :func:`clean_text`.

    ``bytes`` are decoded by BeautifulSoup (``<meta charset>``, byte-order mark, or a guess).
    Raises :class:`InputError` naming ``source`` when nothing readable is left.
    """
    try:
        soup = BeautifulSoup(markup, "html.parser")
    except ParserRejectedMarkup as err:
        raise CorruptFileError(f"{source} cannot be parsed as HTML: {err}") from None
    _drop_non_content(soup)
    _mark_layout(soup)
    text = clean_text(soup.get_text())
    if not text:
        raise InputError(f"{source} has no readable text (only markup, scripts or navigation)")
    return text


def fetch_url_text(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The readable, cleaned text of a web page or plain-text URL."""
    page = fetch_url(url, timeout, max_bytes)
    declared = _decode(page.body, page.charset)
    if page.content_type == "text/plain":
        text = clean_text(declared if declared is not None else page.body.decode("utf-8", errors="replace"))
        if not text:
            raise InputError(f"{url} is empty")
        return text
    # Without a usable declared charset, BeautifulSoup reads <meta charset> or guesses from the bytes.
    return extract_text_from_html(declared if declared is not None else page.body, source=url)


def _decode(body: bytes, charset: str | None) -> str | None:
    """``body`` decoded with the server's charset, or None when it declared none we know."""
    if not charset:
        return None
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return None
