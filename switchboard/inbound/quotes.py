"""Keep only what the sender wrote in a reply: drop the quoted previous message and the signature.

Used when a mail updates an existing call, task or request, so its history shows the new words
and not the whole thread again. Rules, not learning: attribution lines ("On ... wrote:" in a
dozen languages), "Original Message" separators, Outlook header blocks, `>` quotes, and in
HTML the quote containers mail clients use. When in doubt, keep the text.
"""

from __future__ import annotations

import re

import lxml.html
from lxml import etree

_NEWLINES = re.compile(r"\r\n?")

# "-----Original Message-----" and its translations.
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*[-_=*]{2,}\s*(original message|reply message|ursprüngliche nachricht|originalnachricht|"
    r"message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|"
    r"originalmeddelande|opprinnelig melding|oprindelig meddelelse|alkuperäinen viesti|"
    r"původní zpráva|oryginalna wiadomość|исходное сообщение|eredeti üzenet|原始邮件|元のメッセージ)"
    r"\s*[-_=*]{2,}\s*$",
    re.IGNORECASE,
)
_SEPARATOR_LINE = re.compile(r"^\s*(_{10,}|-{10,}|={10,})\s*$")
# The words mail clients end an attribution line with ("On <date>, <name> wrote:").
_WROTE_WORDS = (
    "wrote", "writes", "schrieb", "schreef", "a écrit", "a ecrit", "escribió", "escribio", "escreveu",
    "ha scritto", "skrev", "kirjoitti", "napisał(a)", "napisała", "napisał", "napsal(a)", "napsal", "írta",
    "написал(а)", "написала", "написал", "пишет", "yazdı", "έγραψε", "כתב", "写道", "のメッセージ", "님이 작성",
)
_WROTE = re.compile("(" + "|".join(map(re.escape, _WROTE_WORDS)) + r")\s*:?\s*$", re.IGNORECASE)
# German, Dutch and Scandinavian clients put the name after the verb: "Am ... schrieb Ann <a@b>:"
_WROTE_BEFORE_NAME = re.compile(r"\d.*\b(schrieb|schreef|skrev|napsal)\b[^:]{0,150}:\s*$", re.IGNORECASE)
_DIGIT_OR_AT = re.compile(r"\d|@")
_ATTRIBUTION_START = re.compile(
    r"^\s*(on|am|le|el|em|il|op|den|w dniu|dne|в|на|le\s+\w+|\d|\w+,\s*\d)", re.IGNORECASE)
# Yandex, mail.ru and others: `26.06.2014, 14:41, "Alexander L" <a@example.com>:`
_DATED_COLON = re.compile(r"^\s*\S*\d{1,4}[./-]\d{1,2}[./-]\d{1,4}.{0,150}:\s*$|^\s*\w{3},? \d{1,2} \w{3} \d{4}.{0,150}:\s*$")

_HEADER_FROM = re.compile(
    r"^\s*\*?\s*(from|von|de|da|van|från|fra|od|от|lähettäjä|feladó|寄件者|发件人|差出人)\s*\*?\s*:\s*\*?\s*\S",
    re.IGNORECASE)
_HEADER_OTHER = re.compile(
    r"^\s*\*?\s*(sent|date|to|subject|cc|gesendet|datum|an|betreff|envoyé|à|objet|enviado|fecha|para|"
    r"asunto|inviato|oggetto|verzonden|aan|onderwerp|skickat|till|ämne|sendt|til|emne|отправлено|"
    r"кому|тема|дата|lähetetty|vastaanottaja|aihe|odesláno|komu|předmět|wysłano|do|temat)\s*\*?\s*:",
    re.IGNORECASE)
_FORWARD = re.compile(r"^\s*(-{2,}\s*forwarded message|begin forwarded message|-{2,}\s*weitergeleitete nachricht|"
                      r"-{2,}\s*message transféré)", re.IGNORECASE)


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution_length(lines: list[str], index: int) -> int:
    """Number of lines (1-3) of an "On ... wrote:" attribution starting at `index`, else 0."""
    joined = ""
    for length in range(1, 4):
        if index + length > len(lines):
            break
        if length == 2:
            # A wrapped attribution starts like one; "Hello" above "On ... wrote:" is not part of it.
            first = lines[index].strip()
            if first.endswith((".", "!", "?")) or not (_ATTRIBUTION_START.match(first) or _DIGIT_OR_AT.search(first)):
                break
        line = lines[index + length - 1]
        if not line.strip() or _is_quoted(line):
            break
        joined = (joined + " " + line.strip()).strip()
        if len(joined) > 300:
            break
        # Every attribution ends in a colon or a "wrote" word: checking that first spares
        # the searches below on the other lines (they were most of a long reply's cost).
        end = joined.rstrip(": \t")
        if not (joined.endswith(":") or end.lower().endswith(_WROTE_WORDS)):
            continue
        if (_WROTE.search(joined) or _WROTE_BEFORE_NAME.search(joined)) and (
                _ATTRIBUTION_START.match(joined) or _DIGIT_OR_AT.search(joined)):
            return length
        if length == 1 and _DATED_COLON.match(joined) and _next_is_quote(lines, index + 1):
            return 1
    return 0


def _next_is_quote(lines: list[str], index: int) -> bool:
    for line in lines[index:index + 3]:
        if line.strip():
            return _is_quoted(line)
    return False


def _header_block_length(lines: list[str], index: int) -> int:
    """Lines of an Outlook-style "From: / Sent: / To: / Subject:" block starting at `index`."""
    first = lines[index]
    if not (_HEADER_FROM.match(first) or _HEADER_OTHER.match(first)):
        return 0
    headers, end = 1, index + 1
    while end < len(lines) and end <= index + 8:
        line = lines[end]
        if _HEADER_OTHER.match(line) or _HEADER_FROM.match(line):
            headers += 1
        elif line.strip() and not line.startswith((" ", "\t")):
            break
        end += 1
    has_from = any(_HEADER_FROM.match(line) for line in lines[index:end])
    return end - index if headers >= 2 and has_from else 0


def _splitter_at(lines: list[str], index: int) -> int:
    """How many lines the reply separator starting at `index` covers (0 if there is none)."""
    line = lines[index]
    if not line.strip() or _is_quoted(line):
        return 0
    if _ORIGINAL_MESSAGE.match(line):
        return 1
    if _SEPARATOR_LINE.match(line):
        following = next((i for i in range(index + 1, min(index + 4, len(lines))) if lines[i].strip()), None)
        if following is not None and _header_block_length(lines, following):
            return following - index + _header_block_length(lines, following)
        return 0
    length = _attribution_length(lines, index)
    if length:
        return length
    return _header_block_length(lines, index)


def _strip_quotes(lines: list[str]) -> list[str]:
    # A forwarded message is what the sender wants us to read, not a quote.
    first_text = next((line for line in lines if line.strip()), "")
    if _FORWARD.match(first_text):
        return lines

    for index in range(len(lines)):
        length = _splitter_at(lines, index)
        if not length:
            continue
        before = lines[:index]
        if any(line.strip() and not _is_quoted(line) for line in before):
            lines = before  # top-posted reply: everything from the separator on is the old mail
        else:
            # Bottom-posted: drop the separator and the quote under it, keep the answer below.
            end = index + length
            while end < len(lines) and (not lines[end].strip() or _is_quoted(lines[end])):
                end += 1
            lines = lines[end:]
        break

    # A quote block at the start or end (no separator line above it) is old text as well;
    # quotes between answers are kept, they give the answers their context.
    while lines and (not lines[-1].strip() or _is_quoted(lines[-1])):
        lines = lines[:-1]
    start = 0
    while start < len(lines) and (not lines[start].strip() or _is_quoted(lines[start])):
        start += 1
    interleaved = any(_is_quoted(line) for line in lines[start:])
    if any(_is_quoted(line) for line in lines[:start]) and not interleaved:
        lines = lines[start:]
    # An attribution left dangling above a removed quote.
    tail = [i for i, line in enumerate(lines) if line.strip()][-3:]
    for i in tail:
        if _attribution_length(lines, i) == len(lines) - i or (
                _DATED_COLON.match(lines[i]) and i == tail[-1]):
            lines = lines[:i]
            break
    return lines


# ---------------------------------------------------------------------------------------------
# Signatures

_DELIMITER = re.compile(r"^\s*(--|---|-- |__+|—+|-{4,}|_{4,}|\*{4,}|={4,})\s*$")
_MOBILE = re.compile(
    r"^\s*(sent from my|sent from (mail|outlook|yahoo|samsung|gmail|my)|get outlook for|sent with|sent via|"
    r"sent using|envoyé de mon|envoyé depuis|von meinem .* gesendet|gesendet von|enviado desde mi|"
    r"enviado do meu|inviato da|verzonden met|verstuurd vanaf|skickat från|sendt fra|отправлено с)",
    re.IGNORECASE)
_SIGN_OFF = re.compile(
    r"^\s*(thanks( again| a lot| so much)?|thank you( very much| again)?|many thanks|thx|ta|cheers|"
    r"regards|kind regards|best regards|warm regards|warmest regards|best wishes|best|all the best|"
    r"sincerely|yours sincerely|yours truly|yours|greetings|br|mfg|mit freundlichen grüßen|"
    r"mit freundlichen grüssen|freundliche grüße|viele grüße|beste grüße|liebe grüße|gruß|grüße|"
    r"cordialement|bien cordialement|salutations|saludos|un saludo|atentamente|cordiali saluti|"
    r"saluti|groeten|met vriendelijke groet|hälsningar|med vänlig hälsning|mvh|hilsen|"
    r"с уважением|спасибо)\s*[,.!-]*\s*$",
    re.IGNORECASE)
SIGNATURE_MAX_LINES = 15
_SHORT = 60


def _sender_tokens(sender: str | None) -> list[str]:
    if not sender:
        return []
    sender = sender.strip()
    if "@" in sender and " " not in sender:
        words = re.split(r"[._+-]", sender.split("@", 1)[0])
    else:
        words = re.sub(r"<[^>]*>|\"", " ", sender).replace(",", " ").split()
    return [w.lower() for w in words if len(w) >= 2 and w.isalpha()]


def _names_sender(line: str, tokens: list[str]) -> bool:
    text = re.sub(r"^(#sig#)?[^A-Za-zÀ-ɏ]*", "", line.strip()).lower()
    if not text or len(line.strip()) > 50 or len(text.split()) > 6:
        return False
    return any(re.match(rf"{re.escape(token)}\b", text) or text.startswith(token) for token in tokens)


def split_signature(text: str, sender: str | None = None) -> tuple[str, str | None]:
    """Split a message body into (body, signature); signature None when none is found.

    `sender` (display name or address) helps: a short closing line naming the sender starts
    the signature.
    """
    lines = _NEWLINES.sub("\n", text or "").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return text or "", None
    non_empty = [i for i, line in enumerate(lines) if line.strip()]
    window = non_empty[-SIGNATURE_MAX_LINES:]
    if len(window) < 2 and not (window and _MOBILE.match(lines[window[0]])):
        return "\n".join(lines), None
    tokens = _sender_tokens(sender)
    candidates: list[int] = []

    for i in window:
        line = lines[i]
        if i == non_empty[0]:
            continue  # the whole mail is never a signature
        after = [j for j in non_empty if j > i]
        if _DELIMITER.match(line) and after:
            candidates.append(i)
        elif _MOBILE.match(line) and len(after) <= 3:
            candidates.append(i)
        elif tokens and _names_sender(line, tokens) and all(len(lines[j]) <= 80 for j in after):
            previous = [j for j in non_empty if j < i]
            if previous and _SIGN_OFF.match(lines[previous[-1]]):
                candidates.append(previous[-1])
            else:
                candidates.append(i)
        elif _SIGN_OFF.match(line) and 1 <= len(after) <= 6 and all(len(lines[j].strip()) <= _SHORT for j in after):
            candidates.append(i)
    if not candidates:
        return "\n".join(lines), None
    start = min(candidates)
    return "\n".join(lines[:start]).rstrip(), "\n".join(lines[start:]).strip("\n")


def strip_quoted_reply(text: str, *, strip_signature: bool = True, sender: str | None = None) -> str:
    """The new part of a reply: without the quoted earlier mail and (by default) the signature.

    Returns the text unchanged (but trimmed) when stripping would leave nothing.
    """
    if not text:
        return ""
    original = _NEWLINES.sub("\n", text)
    lines = _strip_quotes(original.split("\n"))
    result = "\n".join(lines).strip("\n")
    if strip_signature and result.strip():
        body, signature = split_signature(result, sender)
        if signature is not None and body.strip():
            result = body
    if not result.strip():
        return original.strip()
    return result.rstrip()


# ---------------------------------------------------------------------------------------------
# HTML

# Containers mail clients wrap the quoted mail in; the first one found starts the old mail.
_QUOTE_CONTAINERS = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_extra ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' yahoo_quoted ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' moz-cite-prefix ')]",
    "//*[contains(@class, 'OutlookMessageHeader')]",
    "//*[@id='divRplyFwdMsg' or @id='appendonsend' or @id='OLK_SRC_BODY_SECTION' or @id='stopSpelling'"
    " or @id='mail-editor-reference-message-container' or @name='messageReplySection']",
    "//blockquote",
    "//hr",
    "//div[contains(translate(@style, 'BORDERTOPSLID ', 'bordertopslid'), 'border-top:solid')]",
    "//div[contains(translate(@style, ' ', ''), 'border-top-style:solid')]",
)


def _reply_header_follows(element) -> bool:
    """True when a reply header ("From: ... Sent: ...") comes right after `element`."""
    pieces = [" ".join(text.split()) for text in element.xpath("following::text()")[:60]]
    lines: list[str] = []
    for piece in (p for p in pieces if p):
        # Labels and values sit in separate elements: "<b>From:</b> Desk"
        if lines and lines[-1].endswith(":") and len(lines[-1]) <= 20:
            lines[-1] += " " + piece
        else:
            lines.append(piece)
    if not lines:
        return False
    if _ORIGINAL_MESSAGE.match(lines[0]):
        return True
    return any(_header_block_length(lines, i) for i in range(min(2, len(lines))))


def _cut_from(element) -> None:
    """Remove `element` and everything after it in document order."""
    node = element
    while node.getparent() is not None:
        parent = node.getparent()
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        if node is not element:
            node.tail = None
        node = parent
    parent = element.getparent()
    if parent is not None:
        if element.tail:
            element.tail = None
        parent.remove(element)


def _text_nodes(root):
    """(element, attribute, text) for every piece of text in document order."""
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if element.text:
            yield element, "text", element.text
        for child in element:
            if child.tail:
                yield child, "tail", child.tail


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _cut_at_text(root, line: str) -> bool:
    """Cut the document where the text line `line` starts."""
    wanted = _compact(line)[:12]
    if not wanted:
        return False
    for element, where, text in _text_nodes(root):
        compact = _compact(text)
        position = compact.find(wanted[:max(4, min(len(wanted), len(compact)))])
        if position < 0 or not wanted.startswith(compact[position:position + len(wanted)]):
            continue
        # Map the position in the compacted text back to the real text.
        seen, offset = 0, 0
        for offset, char in enumerate(text):
            if not char.isspace():
                if seen == position:
                    break
                seen += 1
        if where == "text":
            element.text = text[:offset]
            for child in list(element):
                element.remove(child)
            for sibling in list(element.itersiblings()):
                element.getparent().remove(sibling)
            node = element
        else:
            element.tail = text[:offset]
            node = element
        # everything after `node` in document order goes
        while node.getparent() is not None:
            parent = node.getparent()
            for sibling in list(node.itersiblings()):
                parent.remove(sibling)
            if node is not element:
                node.tail = None
            node = parent
        return True
    return False


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>", re.IGNORECASE)


def strip_quoted_reply_html(html: str) -> str:
    """The new part of an HTML reply, as HTML (quote containers and reply headers removed)."""
    if not html or not html.strip():
        return html or ""
    from switchboard.inbound.html import html_to_text

    try:
        # lxml refuses text that still carries an XML encoding declaration; it is decoded already.
        root = lxml.html.document_fromstring(_XML_DECLARATION.sub("", html, count=1))
    except (etree.ParserError, ValueError):
        return html
    first = None
    order = {element: index for index, element in enumerate(root.iter())}
    for query in _QUOTE_CONTAINERS:
        for element in root.xpath(query):
            if element.tag == "hr" and not _reply_header_follows(element):
                continue  # a rule drawn in the message itself, not a reply separator
            if first is None or order[element] < order[first]:
                first = element
            break
    if first is not None and first.getparent() is not None:
        _cut_from(first)

    # What is left may still end in a plain-text reply header or attribution.
    # Without link targets: the lines are matched back against the document's own text.
    text = html_to_text(lxml.html.tostring(root, encoding="unicode"), links=False)
    lines = text.split("\n")
    for index in range(len(lines)):
        if _splitter_at(lines, index) and any(line.strip() for line in lines[:index]):
            _cut_at_text(root, lines[index])
            break
    else:
        kept = _strip_quotes(lines)
        dropped = [line for line in lines[len(kept):] if line.strip()]
        if dropped:
            _cut_at_text(root, dropped[0])
    return lxml.html.tostring(root, encoding="unicode")
