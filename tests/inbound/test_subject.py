"""The subject keywords people type, the way mail clients mangle them, and our reply tokens."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from switchboard.inbound.subject import SubjectCommand, find_reply_token, parse_subject, strip_subject_prefixes


@pytest.mark.parametrize("subject, action, number", [
    ("Update call #42:", "update_call", 42),
    ("update call 42", "update_call", 42),
    ("UPDATE CALL 42 printer still down", "update_call", 42),
    ("Close call: 42", "close_call", 42),
    ("close call:#42", "close_call", 42),
    ("Reopen call 7", "reopen_call", 7),
    ("Re-open call 7", "reopen_call", 7),
    ("CALL-42", "update_call", 42),
    ("call#42", "update_call", 42),
    ("Call 42", "update_call", 42),
    ("Approve task 7", "approve_task", 7),
    ("approve task #7: fine by me", "approve_task", 7),
    ("Reject task 8", "reject_task", 8),
    ("Update task 9", "update_task", 9),
    ("TASK-9 done", "update_task", 9),
    ("Update request 9", "update_request", 9),
    ("REQ-9", "update_request", 9),
    ("Summary calls", "summary_calls", None),
    ("summary requests", "summary_requests", None),
    ("Summary: tasks", "summary_tasks", None),
    ("Log call: printer on fire", "log_call", None),
    ("Printer on fire", "none", None),
    ("", "none", None),
])
def test_keywords(subject, action, number):
    command = parse_subject(subject)
    assert (command.action, command.number) == (action, number)


@pytest.mark.parametrize("subject, action, number", [
    ("Re: Update call 42", "update_call", 42),
    ("RE: RE: Fwd: close call 42", "close_call", 42),
    ("AW: WG: Update call 42", "update_call", 42),
    ("SV: VS: Antw: TR: RV: R: Reject task 3", "reject_task", 3),
    ("Re[2]: Re(3): Re^4: Update call 5", "update_call", 5),
    ("[EXTERNAL] Re: Approve task 7", "approve_task", 7),
    ("*EXTERNAL* FW: Approve task 7", "approve_task", 7),
    ("[rt-users] Re: CALL-12", "update_call", 12),
    ("Re: [CALL-42] printer", "update_call", 42),
    ("回复: 转发: Update call 8", "update_call", 8),
    ("ＲＥ：Close call ４２", "close_call", 42),  # full-width, as some Japanese clients send
    ("RE : Close call 3", "close_call", 3),  # French spacing
])
def test_prefixes_and_tags_are_stripped(subject, action, number):
    command = parse_subject(subject)
    assert (command.action, command.number) == (action, number)


def test_leftmost_reference_wins():
    assert parse_subject("CALL-3 duplicate of CALL-4").number == 3
    assert parse_subject("Re: Close call 10, see also update call 11").action == "close_call"
    assert parse_subject("Printer broken - update call 42").number == 42


def test_words_that_only_look_like_references():
    assert parse_subject("Please call 555 1234").action == "none"
    assert parse_subject("Recall 42 items").action == "none"
    assert parse_subject("Conference call tomorrow").action == "none"


def test_summary_and_rest_text():
    assert parse_subject("Re: Log call: printer on fire") == SubjectCommand(
        "log_call", None, "printer on fire", "printer on fire")
    none = parse_subject("Fwd: [EXTERNAL] Printer on fire")
    assert (none.action, none.summary) == ("none", "Printer on fire")
    update = parse_subject("Re: Update call 42: toner replaced")
    assert (update.rest, update.summary) == ("toner replaced", "toner replaced")


def test_reply_token_in_subject_or_body():
    assert find_reply_token("Re: Update call 42 [SB-AbC_def-1234567890xyz]") == "AbC_def-1234567890xyz"
    assert find_reply_token("text\n> [SB-0123456789abcdef] quoted\n") == "0123456789abcdef"
    assert find_reply_token("[SB-tooshort]") is None
    assert find_reply_token("[SB-" + "a" * 41 + "]") is None
    assert find_reply_token(None) is None
    # The token tag does not get in the way of the keywords.
    assert parse_subject("Re: [SB-0123456789abcdef] Close call 9").action == "close_call"
    assert strip_subject_prefixes("[SB-0123456789abcdef] Re: hello") == "hello"


PREFIXES = ["Re:", "RE:", "re:", "Fwd:", "FW:", "Fw:", "AW:", "SV:", "WG:", "VS:", "Antw:", "TR:", "RV:",
            "R:", "Re[2]:", "RE(3):", "[EXTERNAL]", "[External]", "*EXTERNAL*", "[rt-users]", "Re :",
            "Odp:", "Vá:"]
COMMANDS = [("Update call {}", "update_call"), ("Close call #{}", "close_call"), ("reopen call: {}", "reopen_call"),
            ("CALL-{}", "update_call"), ("Approve task {}", "approve_task"), ("reject task #{}:", "reject_task"),
            ("Update task {}", "update_task"), ("update request {}", "update_request")]


@settings(max_examples=300, deadline=None)
@given(prefixes=st.lists(st.sampled_from(PREFIXES), max_size=6),
       spaces=st.sampled_from(["", " ", "  "]),
       command=st.sampled_from(COMMANDS),
       number=st.integers(min_value=0, max_value=10**15),
       tail=st.sampled_from(["", " printer", ": still broken", " - see CALL-1"]))
def test_any_number_survives_any_prefix_chain(prefixes, spaces, command, number, tail):
    template, action = command
    subject = spaces.join(prefixes) + spaces + template.format(number) + tail
    parsed = parse_subject(subject)
    assert (parsed.action, parsed.number) == (action, number), subject


@settings(max_examples=500, deadline=None)
@given(st.text())
@example("Re: " * 10_000)
@example("[" * 5000 + "call 1")
@example("call " + "9" * 100)
def test_garbage_never_raises(subject):
    command = parse_subject(subject)
    assert command.action in {"log_call", "update_call", "close_call", "reopen_call", "approve_task",
                              "reject_task", "update_task", "update_request", "summary_calls",
                              "summary_requests", "summary_tasks", "none"}
    assert command.number is None or command.number >= 0
    find_reply_token(subject)
