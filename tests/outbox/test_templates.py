"""Admin-written templates: rendered as asked, and no way out of the sandbox."""

from types import SimpleNamespace

import pytest

from switchboard.outbox.templates import TemplateError, check_template, render

CALL = SimpleNamespace(ref="CALL-42", summary="Printer <b>jams</b>", tags=["a", "b"],
                       assigned_group=None)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ call.__dict__ }}",
    "{{ call|attr('__class__') }}",
    "{{ self.__dict__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ call.tags.append('x') }}",
    "{{ config }}{{ request }}{{ lipsum(3) }}",
])
def test_escaping_the_sandbox_is_a_template_error(source):
    with pytest.raises(TemplateError) as caught:
        render(source, {"call": CALL})
    assert str(caught.value).startswith("line 1: ")
    assert CALL.tags == ["a", "b"]


@pytest.mark.parametrize("source", [
    "{{ range(10**9)|list }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}",
])
def test_runaway_templates_are_stopped(source):
    with pytest.raises(TemplateError, match="not allowed|limited|too"):
        render(source, {})


def test_live_objects_cannot_be_called_into():
    deleted = []

    class Query:
        def delete(self):
            deleted.append(True)

    class Model:
        ref = "CALL-1"
        query = Query()
        password_hash = "scrypt$..."

        def close(self):
            deleted.append(True)

    for source in ("{{ call.query.delete() }}", "{{ call.close() }}", "{{ call.password_hash }}"):
        with pytest.raises(TemplateError, match="not allowed"):
            render(source, {"call": Model()})
    assert deleted == []
    assert render("{{ call.ref }}", {"call": Model()}) == "CALL-1"


def test_plain_values_keep_their_everyday_methods_and_filters():
    out = render("{{ call.ref|lower }} {{ call.summary.upper() }} {{ '%s/%d'|format('a', 2) }} "
                 "{% for t in call.tags %}{{ loop.index }}{{ t }}{% endfor %} "
                 "{{ call.assigned_group.name if call.assigned_group else 'nobody' }}",
                 {"call": CALL})
    assert out == "call-42 PRINTER <B>JAMS</B> a/2 1a2b nobody"


def test_html_is_escaped_text_and_subject_are_not():
    variables = {"call": CALL}
    assert render("<p>{{ call.summary }}</p>", variables, kind="html") == \
        "<p>Printer &lt;b&gt;jams&lt;/b&gt;</p>"
    assert render("{{ call.summary }}", variables, kind="text") == "Printer <b>jams</b>"
    assert render("{{ call.summary }}", variables, kind="subject") == "Printer <b>jams</b>"


def test_subjects_come_out_on_one_line():
    out = render("{{ call.ref }}\n  {{ s }}\r\nBcc: x@y\n", {"call": CALL, "s": "a\nb"},
                 kind="subject")
    assert out == "CALL-42 a b Bcc: x@y"


def test_an_unknown_variable_names_the_line():
    with pytest.raises(TemplateError) as caught:
        render("Hello\n{{ call.ref }}\n{{ call.nope }}\n", {"call": CALL})
    assert caught.value.line == 3 and "nope" in str(caught.value)
    with pytest.raises(TemplateError, match="line 2: .*'customer' is undefined"):
        render("Hello\n{{ customer.name }}", {})


def test_none_prints_as_nothing():
    assert render("[{{ call.assigned_group }}]", {"call": CALL}) == "[]"


def test_syntax_errors_are_reported_with_their_line():
    source = "Hello {{ call.ref }}\n{% if call.ref %}\nno end"
    [problem] = check_template(source)
    assert problem.startswith("line 3: Unexpected end of template") and "'endif'" in problem
    with pytest.raises(TemplateError) as caught:
        render(source, {"call": CALL})
    assert caught.value.line == 3


def test_check_template_names_unknown_variables():
    source = "{{ call.ref }}\n{% for x in items %}{{ x }}{{ cal.ref }}{% endfor %}\n{{ range(2)|list }}"
    assert check_template(source, known_variables={"call", "items"}) == \
        ["line 2: unknown variable 'cal'"]
    assert check_template(source) == []


def test_datetime_filter():
    from datetime import datetime, timezone

    when = datetime(2025, 3, 4, 9, 15, tzinfo=timezone.utc)
    assert render("{{ t|datetime }}|{{ t|date }}|{{ t|datetime('%d.%m.%Y') }}|{{ n|datetime }}",
                  {"t": when, "n": None}) == "2025-03-04 09:15 UTC|2025-03-04|04.03.2025|"
