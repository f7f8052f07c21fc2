"""Make the HTML of incoming mail safe to show in the portal, and turn it into plain text.

Safe means: no scripts, no event handlers, nothing that loads from the network when an
analyst opens the mail (remote images are tracking pixels), only `cid:` and inline data images.
"""

from __future__ import annotations

import html as html_lib
import re

import lxml.html
import nh3
from inscriptis import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml import etree

ALLOWED_TAGS = frozenset({
    "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center",
    "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
    "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
})

_TABLE_ATTRIBUTES = {"align", "valign", "width", "height", "colspan", "rowspan", "border",
                     "cellpadding", "cellspacing", "bgcolor"}
ALLOWED_ATTRIBUTES = {
    "*": {"style", "title", "dir", "lang"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color", "face", "size"},
    "table": _TABLE_ATTRIBUTES,
    "td": _TABLE_ATTRIBUTES,
    "th": _TABLE_ATTRIBUTES,
    "tr": _TABLE_ATTRIBUTES,
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "blockquote": {"type"},
}

# Properties that cannot load anything from the network (no background, list-style, content...).
ALLOWED_STYLE_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "text-transform", "line-height",
    "letter-spacing", "white-space", "vertical-align", "direction",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-color",
    "border-style", "border-width", "border-collapse", "border-spacing",
    "width", "height", "max-width", "min-width", "list-style-type", "display",
})

# Removed together with everything inside them, not just unwrapped.
_DROP_WITH_CONTENT = frozenset({"script", "style", "title", "noscript", "template", "iframe",
                                "object", "embed", "applet", "frame", "frameset", "head"})

_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_DATA_IMAGE = re.compile(r"^data:image/(png|gif|jpe?g|webp|bmp);base64,", re.IGNORECASE)
_NEWLINES = re.compile(r"\r\n?")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    lowered = value.strip().lower()
    if attribute == "src":
        # Only images carried inside the mail itself; a remote src would tell the sender
        # when (and from where) the mail was read.
        if lowered.startswith("cid:") or _DATA_IMAGE.match(lowered):
            return value.strip()
        return None
    if attribute == "href":
        if lowered.startswith(_LINK_SCHEMES) or lowered.startswith("#"):
            return value
        return None
    if attribute == "style" and ("url(" in lowered or "expression" in lowered or "@import" in lowered):
        return None
    return value


def sanitize_html(html: str) -> str:
    """Return HTML that keeps the mail's formatting but cannot run code or load remote content."""
    if not html:
        return ""
    html = html.replace("\x00", "")
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        clean_content_tags=set(_DROP_WITH_CONTENT),
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        link_rel="noopener noreferrer",
        filter_style_properties=set(ALLOWED_STYLE_PROPERTIES),
        attribute_filter=_filter_attribute,
        strip_comments=True,
    )


_TEXT_CONFIG = ParserConfig(display_links=False, display_images=False)
_TAG = re.compile(r"<[^>]*>")


_BLANK_LINE = re.compile(r"^[ \t]+$", re.MULTILINE)


def tidy_text(text: str, *, strip_line_ends: bool = False) -> str:
    """Normalise line endings and runs of blank lines.

    Spaces at line ends are kept unless asked: in plain text they can mean something
    (the "-- " signature separator, format=flowed).
    """
    # Each substitution only where it can match: most mail needs none, and these
    # scans were a tenth of reading a plain message.
    if "\r" in text:
        text = _NEWLINES.sub("\n", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    if strip_line_ends:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    elif " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = _BLANK_LINE.sub("", text)
    if "\n\n\n" in text:
        text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip("\n")


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>", re.IGNORECASE)
# Link targets worth showing in text; others (javascript:, data:, in-page #anchors) never are.
_SHOWN_SCHEMES = ("http://", "https://", "ftp://", "mailto:", "tel:")
# A target longer than this is shown cut (a hostile mail could carry a megabyte in one href).
MAX_SHOWN_LINK = 2000


def _bare(value: str) -> str:
    """A link or its text compared loosely: no scheme, no "www.", no trailing slash."""
    value = value.strip().lower()
    value = re.sub(r"^(?:https?://|ftp://|mailto:|tel:)", "", value)
    return value.removeprefix("www.").rstrip("/")


def _show_link_targets(tree) -> None:
    """After each link whose text is not its address, write the address: `text (url)`. An
    analyst reading on a phone needs the target; `<a href="mailto:ann@x">ann@x</a>` and links
    whose text is the URL already show it."""
    for link in tree.iter("a"):
        href = (link.get("href") or "").strip()
        if not href.lower().startswith(_SHOWN_SCHEMES):
            continue
        text = " ".join(link.text_content().split())
        if not text:
            continue  # an image or an empty link: nothing to put the address beside
        shown = href
        if href.lower().startswith("mailto:"):
            shown = href[len("mailto:"):].split("?", 1)[0]
        if _bare(text) in (_bare(href), _bare(shown)):
            continue
        if len(shown) > MAX_SHOWN_LINK:
            shown = shown[:MAX_SHOWN_LINK] + "..."
        link.tail = f" ({shown})" + (link.tail or "")


def html_to_text(html: str, *, links: bool = True) -> str:
    """Render HTML as readable plain text (paragraphs, lists and tables kept apart), with each
    link's target after its text (unless `links` is False, or the text is the target). A page
    whose only text is its <title> gives the title."""
    if not html or not html.strip():
        return ""
    html = html.replace("\x00", "")
    title = ""
    try:  # inscriptis already leaves out head, script and style
        tree = lxml.html.document_fromstring(_XML_DECLARATION.sub("", html.strip(), count=1))
        if links:
            _show_link_targets(tree)
        text = Inscriptis(tree, _TEXT_CONFIG).get_text()
        title = " ".join((tree.findtext(".//title") or "").split())
    except (etree.ParserError, ValueError):
        text = _fallback_text(html)
    except Exception:  # never let one odd HTML body take the whole message down
        text = _fallback_text(html)
    text = tidy_text(text.replace("\xa0", " "), strip_line_ends=True)
    return text if text.strip() else title


def _fallback_text(html: str) -> str:
    return html_lib.unescape(_TAG.sub(" ", html))
