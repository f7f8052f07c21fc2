"""What `mail ingest` made of each corpus message before issue 10's changes, and the check
that no message's outcome changed for the worse since.

The baseline (corpus_outcomes.json) holds outcomes only, file name -> status, never the
corpus's content. It was written by test_corpus_ingest's own pass over the corpus, run on the
code at commit 6382510 in a git worktree with SWITCHBOARD_WRITE_CORPUS_OUTCOMES=<file>.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

BASELINE = Path(__file__).with_name("corpus_outcomes.json")
BASELINE_COMMIT = "6382510"
WRITE_TO = "SWITCHBOARD_WRITE_CORPUS_OUTCOMES"

# Changes of outcome that are one of issue 10's fixes, each with why (file -> (before, now, why)).
# Anything else that differs from the baseline fails the test.
EXPLAINED: dict[str, tuple[str, str, str]] = {
    # Item 13: an mbox file is ingested message by message; each ends as it does on its own
    # (test_corpus_ingest also ingests the messages of mailbox/mbox-* one by one: #35 was
    # processed at the baseline too, a person forwarding a bounce by hand).
    "sisimai-set-of-emails/mailbox/mbox-0": (
        "ignored", "+".join(["ignored"] * 35 + ["processed", "ignored"]),
        "item 13: an mbox of 37 messages, each ingested on its own"),
    "sisimai-set-of-emails/maildir/bsd/rfc3464-28.eml": (
        "ignored", "ignored+ignored", "item 13: an mbox of two delivery reports, each ingested on its own"),
}

_LINE = re.compile(r"^(?P<label>.+?): (?P<status>new|processed|ignored|rejected|failed): ", re.MULTILINE)


def outcome_of(output: str) -> str:
    """The status `mail ingest` printed for one file (`<file>: <status>: <outcome>`); with
    several messages in the file, their statuses joined by "+"; what went wrong otherwise."""
    statuses = [match.group("status") for match in _LINE.finditer(output)]
    if statuses:
        return "+".join(statuses)
    return "not stored" if "not stored" in output else "no outcome"


def differences(outcomes: dict[str, str]) -> list[str]:
    """Every file whose outcome is not the baseline's, one line each; "explained" marks the fixes."""
    baseline = json.loads(BASELINE.read_text())["outcomes"]
    lines = []
    for name in sorted(set(baseline) | set(outcomes)):
        before, now = baseline.get(name, "absent"), outcomes.get(name, "absent")
        if before == now:
            continue
        known = EXPLAINED.get(name)
        if known and known[:2] == (before, now):
            lines.append(f"explained: {name}: {before} -> {now} ({known[2]})")
        else:
            lines.append(f"CHANGED: {name}: {before} -> {now}")
    return lines


def keep_if_asked(outcomes: dict[str, str]) -> None:
    """Writes the outcomes as a new baseline when SWITCHBOARD_WRITE_CORPUS_OUTCOMES names a file."""
    target = os.environ.get(WRITE_TO)
    if target:
        Path(target).write_text(json.dumps({"commit": BASELINE_COMMIT, "outcomes": outcomes},
                                           indent=0, sort_keys=True) + "\n")
