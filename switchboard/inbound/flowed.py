"""Un-flow text/plain; format=flowed (RFC 3676) into the paragraphs the sender typed.

Thunderbird, Apple Mail and many phones wrap long lines with soft breaks: a line that ends in
a space continues on the next. Shown as it arrives, every soft break looks like a hard one;
with DelSp=yes the space before a soft break is not part of the text either, and keeping it
splits words. Quote stripping reads the un-flowed text (one line per paragraph).
"""

from __future__ import annotations

SIGNATURE_SEPARATOR = "-- "


def is_flowed(content_type_params: dict[str, str]) -> bool:
    """Whether a part's Content-Type parameters (lower-case names) say format=flowed."""
    return content_type_params.get("format", "").strip().strip('"').lower() == "flowed"


def deletes_space(content_type_params: dict[str, str]) -> bool:
    return content_type_params.get("delsp", "").strip().strip('"').lower() == "yes"


def _quote_depth(line: str) -> int:
    depth = 0
    while depth < len(line) and line[depth] == ">":
        depth += 1
    return depth


def unflow(text: str, *, delsp: bool = False) -> str:
    """The text with soft line breaks joined (RFC 3676 section 4).

    Each line is read as: quote depth (leading ">"), space-stuffing (one leading space,
    removed), content. A line whose content ends in a space is flowed: it joins the next
    line when that line has the same quote depth (with DelSp=yes, without the space). The
    signature separator "-- " is never flowed. Quoted paragraphs come out as ">" per level,
    a space, and the joined text. Linear in the length of the text.
    """
    if not text:
        return text
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    paragraph: list[str] = []
    paragraph_depth = 0

    def finish(*, soft_break: bool = False) -> None:
        if soft_break and paragraph and paragraph[-1].endswith(" "):
            # A soft break with nothing to join: its space was never the sender's text.
            paragraph[-1] = paragraph[-1][:-1]
        content = "".join(paragraph)
        if paragraph_depth:
            out.append(">" * paragraph_depth + (" " + content if content else ""))
        else:
            out.append(content)
        paragraph.clear()

    open_paragraph = False
    for line in lines:
        depth = _quote_depth(line)
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing (or the space after quote marks)
        if open_paragraph and (depth != paragraph_depth or content == SIGNATURE_SEPARATOR):
            # A soft break before a change of quote depth (or before the signature separator)
            # is the sender's error: the flowed line stands as a line of its own (RFC 3676 4.5).
            finish(soft_break=True)
            open_paragraph = False
        if not open_paragraph:
            paragraph_depth = depth
        flowed = content.endswith(" ") and content != SIGNATURE_SEPARATOR
        if flowed and delsp:
            content = content[:-1]
        paragraph.append(content)
        open_paragraph = flowed
        if not flowed:
            finish()
    if paragraph:
        finish(soft_break=True)
    return "\n".join(out)
