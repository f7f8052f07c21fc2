"""Bounds on what one incoming mail can make the parsers do, applied before they see it.

The stdlib header parser slices the rest of the value for every token it reads, so its time and
memory grow with the square of a header's length (a 75 KB To of encoded words took 188 MB), and
html5ever (nh3) checks the stack of open elements for every tag, so deep nesting is quadratic
too (100,000 nested divs took minutes). Each bound here keeps the start of what it cuts and says
so in a warning, and costs one pass over the input (regular expressions that cannot backtrack,
str.find), so a hostile message costs no more than a large ordinary one.
"""

from __future__ import annotations

import re
from collections import Counter

# After unfolding. Real headers are far shorter (a long References header is a few KB).
MAX_HEADER_CHARS = 16384
# Per address header name (To, Cc...), across all its instances.
MAX_ADDRESSES = 100
# Lines of the whole header (fields and their folded lines). Real mail has a few hundred at most
# (Received chains, DKIM, long folded lists); 200,000 tiny fields took seconds to read.
MAX_HEADER_LINES = 5000
# Levels of open HTML elements; real mail (Outlook's nested tables included) stays below 40.
MAX_HTML_DEPTH = 100

ADDRESS_HEADERS = frozenset({
    "from", "sender", "reply-to", "to", "cc", "bcc",
    "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc",
})

# One token of an address list: a quoted string (perhaps unterminated), an escaped character,
# one of the characters that open or close structure, or a run of anything else.
_ADDRESS_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|\\.?|[()<>,]|[^"\\()<>,]+', re.DOTALL)
_ANGLE_ADDR = re.compile(rb"<[^<>]{1,1000}>\s*$")
_NOT_IN_NAME = re.compile(rb'["\\()<>,;:@]')


def _top_level_items(value: bytes, stop_after: int, stop_beyond: int) -> tuple[list[tuple[int, int]], bool]:
    """(start, end) of the addresses in `value`, split at commas outside quotes, comments and
    angle brackets. Stops after `stop_after` items or once an item ends beyond `stop_beyond`;
    the flag says whether anything was left unread."""
    items: list[tuple[int, int]] = []
    depth = 0
    in_angle = False
    start = 0
    for token in _ADDRESS_TOKEN.finditer(value):
        if not items and token.start() > stop_beyond:
            break  # the first address alone is over the limit: the rest is not worth a token loop
        text = token.group()
        if text == b"(" and not in_angle:
            depth += 1
        elif text == b")" and depth:
            depth -= 1
        elif text == b"<" and not depth:
            in_angle = True
        elif text == b">" and not depth:
            in_angle = False
        elif text == b"," and not depth and not in_angle:
            items.append((start, token.start()))
            start = token.end()
            if len(items) >= stop_after or token.start() > stop_beyond:
                return items, True
    items.append((start, len(value)))
    return items, False


def _cut(value: bytes, limit: int) -> bytes:
    """The start of `value`, at most `limit` bytes, cut at a space where one is near the end,
    so an encoded word is not cut in half."""
    if len(value) <= limit:
        return value
    head = value[:limit]
    space = head.rfind(b" ", max(0, limit - 200))
    return head[:space] if space > 0 else head


def _bound_addresses(name: str, value: bytes, budget: int, warnings: list[str]) -> tuple[bytes, int]:
    """The value with at most `budget` addresses and MAX_HEADER_CHARS bytes; how many it keeps."""
    if budget <= 0:
        warnings.append(f"{name}: more than {MAX_ADDRESSES} addresses: the rest were not read")
        return b"", 0
    if len(value) <= MAX_HEADER_CHARS and value.count(b",") < budget:
        return value, value.count(b",") + 1  # the common case: nothing to cut (an upper bound)
    items, more = _top_level_items(value, budget, MAX_HEADER_CHARS)
    kept = [(s, e) for s, e in items[:budget] if e <= MAX_HEADER_CHARS]
    if len(items) > budget or more:
        warnings.append(f"{name}: more than {MAX_ADDRESSES} addresses or {MAX_HEADER_CHARS} characters: "
                        "the rest were not read")
    if kept:
        return value[:kept[-1][1]], len(kept)
    # One address longer than the limit (a display name of thousands of encoded words): keep
    # the start of the name and the address itself, which is what the desk acts on.
    first = value[items[0][0]:items[0][1]]
    warnings.append(f"{name}: an address of {len(first)} characters: its display name was cut")
    angle = _ANGLE_ADDR.search(first[-1100:])
    if angle is None:
        return _cut(first, MAX_HEADER_CHARS), 1
    tail = angle.group().strip()
    # The name without the characters that could make it more than a name (an unterminated
    # quote or comment would swallow the address, a comma would start another).
    name_part = _cut(first[:len(first) - len(angle.group())], MAX_HEADER_CHARS - len(tail) - 2)
    return b" " + _NOT_IN_NAME.sub(b"", name_part).strip() + b" " + tail, 1


def bound_head(message: bytes) -> tuple[bytes, list[str]]:
    """`message` (LF line endings) with its header fields bounded: each at most MAX_HEADER_CHARS
    after unfolding, each address header name at most MAX_ADDRESSES addresses, the header at
    most MAX_HEADER_LINES lines. Fields within the
    bounds are left byte for byte as they were; so is the body."""
    if message.startswith(b"\n"):
        return message, []
    end = message.find(b"\n\n")
    head = message if end < 0 else message[:end]
    rest = b"" if end < 0 else message[end:]
    if len(head) <= MAX_HEADER_CHARS and head.count(b",") < MAX_ADDRESSES:
        return message, []  # nothing in it can be over a bound: the usual case, one scan
    warnings: list[str] = []
    lines = head.split(b"\n")
    if len(lines) > MAX_HEADER_LINES:
        warnings.append(f"the header has {len(lines)} lines: only the first {MAX_HEADER_LINES} were read")
        del lines[MAX_HEADER_LINES:]
    fields: list[list[bytes]] = []
    for line in lines:
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    addresses: Counter = Counter()
    out: list[bytes] = []
    for lines in fields:
        first = lines[0]
        colon = first.find(b":")
        raw_name = first[:colon] if colon > 0 else b""
        name = raw_name.strip().decode("ascii", "replace").lower()
        length = sum(len(line) for line in lines)
        is_address = name in ADDRESS_HEADERS
        if colon <= 0 or (length <= MAX_HEADER_CHARS and not (is_address and sum(
                line.count(b",") for line in lines) >= MAX_ADDRESSES - addresses[name])):
            if is_address and colon > 0:
                addresses[name] += sum(line.count(b",") for line in lines) + 1
            out.extend(lines)
            continue
        value = first[colon + 1:] + b"".join(lines[1:])  # unfolded: the line breaks go, the blanks stay
        label = raw_name.strip().decode("ascii", "replace")
        if is_address:
            value, count = _bound_addresses(label, value, MAX_ADDRESSES - addresses[name], warnings)
            addresses[name] += count
            if not value.strip():
                continue  # nothing left of it to read
        else:
            warnings.append(f"{label}: {length} characters: only the first {MAX_HEADER_CHARS} were read")
            value = _cut(value, MAX_HEADER_CHARS)
        out.append(raw_name + b":" + value)
    return b"\n".join(out) + rest, list(dict.fromkeys(warnings))


# ---------------------------------------------------------------------------------------------
# HTML

_VOID = frozenset({"area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img",
                   "input", "keygen", "link", "meta", "param", "source", "track", "wbr"})
# Their content is text, not markup: skipped to their end tag.
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                       "noframes", "noscript"})
# An open one is closed by the next of its kind (<p>a<p>b is two paragraphs, not nested).
_CLOSED_BY_SAME = frozenset({"p", "li", "dt", "dd", "option", "tr", "td", "th"})
_TAG_START = re.compile(r"<(/?)([A-Za-z][^\s/>]{0,40})")
_raw_text_ends: dict[str, re.Pattern] = {}


def limit_html_depth(html: str, max_depth: int = MAX_HTML_DEPTH) -> tuple[str, bool]:
    """`html` with the tags of elements nested deeper than `max_depth` removed (their text
    stays), so a sanitiser or renderer that is quadratic in the depth stays linear. Returns the
    HTML and whether anything was removed. An approximation of the HTML5 tree builder (void
    elements, raw text, implied ends of p/li/td...), which only matters past the limit."""
    if html.count("<") <= max_depth:
        return html, False  # cannot be that deep
    stack: list[str] = []
    excess: Counter = Counter()
    pieces: list[str] = []
    kept_from = 0
    position = 0
    while True:
        lt = html.find("<", position)
        if lt < 0:
            break
        if html.startswith("<!--", lt):
            end = html.find("-->", lt + 4)
            if end < 0:
                break
            position = end + 3
            continue
        match = _TAG_START.match(html, lt)
        if match is None:
            position = lt + 1
            continue
        gt = html.find(">", match.end())
        if gt < 0:
            break
        position = gt + 1
        closing, name = match.group(1), match.group(2).lower()
        if closing:
            if excess[name]:
                excess[name] -= 1
                pieces.append(html[kept_from:lt])
                kept_from = position
            elif name in stack:
                del stack[len(stack) - 1 - stack[::-1].index(name):]
            continue
        if name in _VOID or html[gt - 1] == "/":
            continue
        if name in _RAW_TEXT:
            ends = _raw_text_ends.get(name) or _raw_text_ends.setdefault(
                name, re.compile("</" + re.escape(name), re.IGNORECASE))
            found = ends.search(html, position)
            if found is None:
                break
            position = found.start()
            continue
        if name in _CLOSED_BY_SAME and stack and stack[-1] == name:
            stack.pop()
        if len(stack) >= max_depth:
            excess[name] += 1
            pieces.append(html[kept_from:lt])
            kept_from = position
            continue
        stack.append(name)
    if not pieces:
        return html, False
    pieces.append(html[kept_from:])
    return "".join(pieces), True
