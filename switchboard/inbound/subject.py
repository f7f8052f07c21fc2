"""Read what a mail's subject asks the desk to do: the keyword grammar of DESIGN.md.

`Update call 42`, `Close call #42:`, `Re: AW: CALL-42 printer`, `Approve task 7`, `Summary calls`,
`Log call: printer on fire`... Reply and forward prefixes and tags like `[EXTERNAL]` are stripped
first; the leftmost reference wins; a subject without one means "log a new call".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

ACTIONS = ("log_call", "update_call", "close_call", "reopen_call", "approve_task", "reject_task",
           "update_task", "update_request", "summary_calls", "summary_requests", "summary_tasks", "none")


@dataclass(frozen=True)
class SubjectCommand:
    """What the subject asks for. `number` is set for actions on one record.

    `summary` is the subject without prefixes, tags or command words (the new call's summary
    for "log_call" and "none"); `rest` is what follows the reference, e.g. "printer still down"
    in "Update call 42: printer still down".
    """

    action: str
    number: int | None = None
    summary: str = ""
    rest: str = ""


# Reply/forward prefixes in the languages mail clients write them in, with counters like
# "Re[2]:", "Re(3):" and "Re^2:". NFKC has already turned full-width colons into ":".
_PREFIX_WORDS = (
    r"re|aw|sv|vs|antw|antwort|rv|r|rif|ref|réf|odp|ynt|atb|vá|res|resp|"
    r"fwd?|fw|wg|tr|enc|doorst|pd|ilt|i̇lt|vb|vl|továbbítás|"
    r"回复|回覆|答复|转发|轉寄|転送|返信|회신|전달|απ|σχετ|πρθ|השב|הועבר"
)
_PREFIX = re.compile(
    rf"\s*(?:(?:{_PREFIX_WORDS})\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*:"
    r"|\*+\s*(?:external|spam|suspected spam)\s*\*+"
    r"|(?:external|ext|extern|caution)\s*:(?!\s*\d))\s*",
    re.IGNORECASE,
)
_TAG = re.compile(r"\s*\[([^\[\]]{0,80})\]\s*")

_KIND = r"(?P<kind>call|task|request|req)"
_VERB = r"(?P<verb>log|update|close|reopen|re-open|approve|reject)"
# A reference is a record word followed by its number. With a command word in front, the
# separator may be nothing, "#", ":", or both ("Update call #42:", "close call: 42").
_REFERENCE = re.compile(
    rf"(?<![\w-])(?:{_VERB}\s+)?{_KIND}"
    r"(?P<sep>\s*-\s*|\s*#\s*|\s*:\s*#?\s*|\s+(?:no\.?|nr\.?|number)\s*#?\s*|\s+#?\s*)"
    r"(?P<number>[0-9]{1,18})(?![0-9])",
    re.IGNORECASE,
)
_LOG_CALL = re.compile(r"^\s*log\s+(?:a\s+)?call\b\s*[:#-]?\s*", re.IGNORECASE)
_SUMMARY = re.compile(r"^\s*summary\s*:?\s+(?:of\s+)?(?:my\s+)?(?P<what>calls?|requests?|tasks?)\b",
                      re.IGNORECASE)
_REPLY_TOKEN = re.compile(r"\[SB-([A-Za-z0-9_-]{16,40})\]", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
MAX_SUBJECT_LENGTH = 2000


def find_reply_token(text: str | None) -> str | None:
    """The token of the first `[SB-<token>]` tag in a subject or body, or None."""
    if not text:
        return None
    match = _REPLY_TOKEN.search(str(text))
    return match.group(1) if match else None


def strip_subject_prefixes(subject: str) -> str:
    """The subject without reply/forward prefixes, warning tags and our reply-token tag."""
    # No real subject is longer; the cap keeps hostile headers cheap.
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", (subject or "")[:MAX_SUBJECT_LENGTH])).strip()
    text = _REPLY_TOKEN.sub(" ", text).strip()
    position = 0
    while True:
        match = _PREFIX.match(text, position)
        if match and match.end() > position:
            position = match.end()
            continue
        tag = _TAG.match(text, position)
        # A tag that carries a reference ("[CALL-42]") is part of the command, keep it.
        if tag and not _REFERENCE.search(tag.group(1)):
            position = tag.end()
            continue
        return text[position:].strip()


def _find_reference(text: str) -> re.Match | None:
    """The leftmost reference. "call 555" in running text is not one ("please call 555 1234"):
    a bare record word needs a command word, a "#", ":" or "-", or to open the subject."""
    for match in _REFERENCE.finditer(text):
        plain_space = not match.group("sep").strip()
        if match.group("verb") or not plain_space or match.start() == 0:
            return match
    return None


_EMPTY_BRACKETS = re.compile(r"\[\s*\]|\(\s*\)")


def _tidy(text: str) -> str:
    text = _EMPTY_BRACKETS.sub(" ", text)
    return _SPACES.sub(" ", text).strip(" \t:-–—#,;.")


def parse_subject(subject: str | None) -> SubjectCommand:
    """Turn a subject line into the command it carries. Never raises."""
    cleaned = strip_subject_prefixes(str(subject or ""))
    if not cleaned:
        return SubjectCommand("none", None, "", "")

    summary = _SUMMARY.match(cleaned)
    if summary:
        what = summary.group("what").lower().rstrip("s")
        return SubjectCommand(f"summary_{what}s", None, cleaned, _tidy(cleaned[summary.end():]))

    log_call = _LOG_CALL.match(cleaned)
    if log_call:
        text = _tidy(cleaned[log_call.end():])
        return SubjectCommand("log_call", None, text, text)

    reference = _find_reference(cleaned)
    if not reference:
        return SubjectCommand("none", None, cleaned, "")
    kind = reference.group("kind").lower()
    verb = (reference.group("verb") or "").lower().replace("-", "")
    number = int(reference.group("number"))
    before, after = cleaned[:reference.start()], cleaned[reference.end():]
    if before.rstrip().endswith("[") and after.lstrip().startswith("]"):  # "[CALL-42] printer"
        before, after = before.rstrip()[:-1], after.lstrip()[1:]
    rest = _tidy(after)
    summary = _tidy(before + " " + after)
    if kind == "call":
        action = {"close": "close_call", "reopen": "reopen_call"}.get(verb, "update_call")
    elif kind == "task":
        action = {"approve": "approve_task", "reject": "reject_task"}.get(verb, "update_task")
    else:
        action = "update_request"
    return SubjectCommand(action, number, summary, rest)
