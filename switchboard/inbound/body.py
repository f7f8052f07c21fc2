"""Which parts of a mail are its body: the plain-text body, the HTML body, and the other
versions of them that are neither body nor file.

The rules are MimeKit's (MimeMessage.TextBody / HtmlBody), what users of other clients
expect; Python's `get_body()` chooses differently in both traps the held-back set showed
(a second text part further down a multipart/mixed taken for the body):

- a message that is one text part: that part, unless it is an attachment;
- multipart/alternative: the last version of the wanted kind, looking into nested
  multiparts (a related one, say) from the last to the first;
- multipart/related: its root (the part the `start` parameter names, else the first);
- multipart/mixed and every other multipart: the first text part that is not an
  attachment, if it is of the wanted kind; or what the first multipart child holds.
  Nothing after that first text part or first multipart is ever the body.

The tree is read through a `Shape` (the parser's walker), so a multipart the parser had to
repair is read as the walker reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PLAIN = "text/plain"
HTML = "text/html"
# As the parser's own bound on nesting: a hostile message cannot make the search recurse deeply.
MAX_DEPTH = 40


class Shape(Protocol):
    def content_type(self, part) -> str: ...  # lower-case "type/subtype"

    def is_attachment(self, part) -> bool: ...  # Content-Disposition: attachment

    def children(self, part) -> list | None: ...  # None for anything but a readable multipart

    def content_id(self, part) -> str | None: ...

    def start(self, part) -> str | None: ...  # a multipart/related's `start` parameter


@dataclass(frozen=True)
class Body:
    plain: object | None = None
    html: object | None = None
    # id() of the other text/plain and text/html versions in the body's multipart/alternative
    # (an earlier plain version, say): the same text again, so neither body nor attachment.
    versions: frozenset[int] = frozenset()

    def role(self, part) -> str | None:
        """"plain" or "html" for a body part, "version" for another version of it, else None."""
        if part is self.plain:
            return "plain"
        if part is self.html:
            return "html"
        return "version" if id(part) in self.versions else None


def choose_body(message, shape: Shape) -> Body:
    plain = _find(message, PLAIN, shape, top=True)
    html = _find(message, HTML, shape, top=True)
    alternative = _body_alternative(message, shape)
    versions: set[int] = set()
    if alternative is not None:
        versions = {id(part) for part in _versions(alternative, shape, 0)} - {id(plain), id(html)}
    return Body(plain, html, frozenset(versions))


def _is_text(part, shape: Shape) -> bool:
    return shape.children(part) is None and shape.content_type(part).startswith("text/")


def _related_root(part, children: list, shape: Shape):
    start = shape.start(part)
    if start:
        wanted = start.strip().strip("<>").strip()
        for child in children:
            if shape.content_id(child) == wanted:
                return child
    return children[0] if children else None


def _find(part, wanted: str, shape: Shape, *, top: bool = False, depth: int = 0):
    if depth > MAX_DEPTH:
        return None
    children = shape.children(part)
    if children is None:
        if top and _is_text(part, shape) and shape.content_type(part) == wanted and not shape.is_attachment(part):
            return part
        return None
    content_type = shape.content_type(part)
    if content_type == "multipart/alternative":
        for child in reversed(children):
            if shape.children(child) is not None:
                found = _find(child, wanted, shape, depth=depth + 1)
                if found is not None:
                    return found
            elif _is_text(child, shape) and shape.content_type(child) == wanted:
                return child
        return None
    if content_type == "multipart/related":
        root = _related_root(part, children, shape)
        if root is None:
            return None
        if shape.children(root) is not None:
            return _find(root, wanted, shape, depth=depth + 1)
        return root if _is_text(root, shape) and shape.content_type(root) == wanted else None
    for child in children:
        if shape.children(child) is not None:
            # The body never comes after a multipart: what it holds or nothing.
            return _find(child, wanted, shape, depth=depth + 1)
        if _is_text(child, shape) and not shape.is_attachment(child):
            # The first text part of a mixed is the body; of another kind, there is none.
            return child if shape.content_type(child) == wanted else None
    return None


def _body_alternative(part, shape: Shape, depth: int = 0):
    """The multipart/alternative the body lives in, following the same path as _find."""
    while part is not None and depth <= MAX_DEPTH:
        children = shape.children(part)
        if children is None:
            return None
        content_type = shape.content_type(part)
        if content_type == "multipart/alternative":
            return part
        if content_type == "multipart/related":
            part = _related_root(part, children, shape)
        else:
            part = next((child for child in children if shape.children(child) is not None
                         or (_is_text(child, shape) and not shape.is_attachment(child))), None)
        depth += 1
    return None


def _versions(part, shape: Shape, depth: int):
    """The text/plain and text/html parts that are versions of the body in an alternative."""
    if depth > MAX_DEPTH:
        return
    children = shape.children(part)
    if children is None:
        if shape.content_type(part) in (PLAIN, HTML) and not shape.is_attachment(part):
            yield part
        return
    content_type = shape.content_type(part)
    if content_type == "multipart/alternative":
        for child in children:
            yield from _versions(child, shape, depth + 1)
    elif content_type == "multipart/related":
        root = _related_root(part, children, shape)
        if root is not None:
            yield from _versions(root, shape, depth + 1)
