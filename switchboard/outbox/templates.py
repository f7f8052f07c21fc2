"""Renders the mail templates admins write, in a Jinja2 sandbox they cannot climb out of.

Subjects and text bodies render without escaping, HTML bodies with autoescape. Anything a
template does wrong (a syntax error, an unknown variable, a reach for Python internals, a
runaway size) becomes a TemplateError with the template line, never a server error.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache, wraps

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Cycler, Joiner, Namespace
from markupsafe import Markup

KINDS = ("subject", "text", "html")

# Limits that keep one template from eating the sender job's memory or time.
MAX_OUTPUT = 500_000  # characters one template may produce
MAX_SIZE = 100_000  # longest string or list an expression may build
MAX_NUMBER_ARGUMENT = 100_000  # largest number passed to a filter or method (widths, counts)
MAX_LOOP_BUDGET = 100_000  # range() items per render, all loops together

_PLAIN_VALUES = (str, int, float, bool, list, tuple, dict, set, frozenset, date, datetime, time,
                 timedelta, Decimal, Markup, types.SimpleNamespace)
_BIG_WIDTH = re.compile(r"\d{6,}")
_PERCENT_STAR = re.compile(r"%[-#0 +]*\*|%[-#0 +]*\d*\.\*")
_budget: ContextVar[list[int]] = ContextVar("template_budget")


class TemplateError(Exception):
    """A template could not be rendered; `str()` is a message fit for the admin who wrote it."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


def render(template_source: str, variables: Mapping[str, object], *, kind: str = "text") -> str:
    """Render a subject, text or html template with the given variables.

    Subjects come back as one line. Raises TemplateError for every template mistake.
    """
    template = _compile(kind, template_source)
    token = _budget.set([MAX_LOOP_BUDGET])
    try:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(dict(variables)):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the result is longer than {MAX_OUTPUT} characters")
            chunks.append(chunk)
        result = "".join(chunks)
    except TemplateError:
        raise
    except Exception as error:  # a template must never take the caller down
        raise _template_error(error) from None
    finally:
        _budget.reset(token)
    if kind == "subject":
        return " ".join(result.split())
    return result


def check_template(source: str, *, known_variables: Iterable[str] | None = None,
                   kind: str = "text") -> list[str]:
    """Problems an editor should show before saving: syntax errors and, when the message
    type's variables are given, names that are not among them. Empty when all is well."""
    env = _environment(kind)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as error:
        return [f"line {error.lineno}: {error.message}"]
    problems: list[str] = []
    if known_variables is not None:
        known = set(known_variables) | set(env.globals)
        unknown = meta.find_undeclared_variables(tree) - known
        first_line = {}
        for name in tree.find_all(nodes.Name):
            if name.name in unknown:
                first_line.setdefault(name.name, name.lineno)
        for name in sorted(unknown, key=lambda n: (first_line.get(n, 0), n)):
            problems.append(f"line {first_line.get(name, '?')}: unknown variable '{name}'")
    return problems


def _template_error(error: Exception) -> TemplateError:
    line = _template_line(error)
    if isinstance(error, TemplateSyntaxError):
        return TemplateError(error.message or str(error), error.lineno)
    if isinstance(error, SecurityError):
        return TemplateError(f"not allowed in a template: {error}", line)
    if isinstance(error, UndefinedError):
        return TemplateError(f"unknown variable or attribute: {error}", line)
    if isinstance(error, OverflowError):
        return TemplateError(str(error), line)
    if isinstance(error, RecursionError):
        return TemplateError("the template calls itself too deeply", line)
    return TemplateError(f"{type(error).__name__}: {error}", line)


def _template_line(error: BaseException) -> int | None:
    # Jinja rewrites tracebacks so template frames carry the template's own line numbers.
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# -- the sandbox ---------------------------------------------------------------------------

def _charge(items: int) -> None:
    budget = _budget.get(None)
    if budget is None:
        return
    budget[0] -= items
    if budget[0] < 0:
        raise SecurityError(f"too many loop steps (more than {MAX_LOOP_BUDGET} range() items)")


def _bounded_range(*args: int) -> range:
    _check_numbers(args)
    rng = range(*args)
    if len(rng) > MAX_SIZE:
        raise OverflowError(f"range() is limited to {MAX_SIZE} items in templates")
    _charge(len(rng))
    return rng


class _BoundedNamespace(Namespace):
    """`namespace()` whose values cannot grow past MAX_SIZE (loops that double a string)."""

    def __setitem__(self, name, value):
        _check_size(value)
        super().__setitem__(name, value)


def _check_size(value) -> None:
    if isinstance(value, (str, list, tuple, dict, set)) and len(value) > MAX_SIZE:
        raise SecurityError(f"a value longer than {MAX_SIZE} items")


def _check_numbers(values) -> None:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and abs(value) > MAX_NUMBER_ARGUMENT:
            raise SecurityError(f"the number {value} is too large here "
                                f"(limit {MAX_NUMBER_ARGUMENT})")


def _check_format(fmt) -> None:
    if isinstance(fmt, str) and (_BIG_WIDTH.search(fmt) or _PERCENT_STAR.search(fmt)):
        raise SecurityError("format widths are limited in templates")


def _guard_filter(name, function):
    # pass_context / pass_environment / pass_eval_context put one argument before the value.
    value_at = 1 if getattr(function, "jinja_pass_arg", None) else 0

    @wraps(function)
    def guarded(*args, **kwargs):
        _check_numbers(args[value_at + 1:])
        _check_numbers(kwargs.values())
        if name == "format" and len(args) > value_at:
            _check_format(args[value_at])
        return function(*args, **kwargs)

    return guarded


def _format_date(value, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (datetime, date)):
        return value.strftime(fmt).strip()
    return str(value)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.globals.pop("lipsum", None)  # bulk text generator: no use in mail, easy to abuse
        self.globals["range"] = _bounded_range
        self.globals["namespace"] = _BoundedNamespace
        self.filters["datetime"] = _format_date
        self.filters["date"] = lambda value, fmt="%Y-%m-%d": _format_date(value, fmt)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self._safe_globals = tuple(self.globals.values())

    def is_safe_callable(self, obj) -> bool:
        if not super().is_safe_callable(obj):
            return False
        if isinstance(obj, (Macro, LoopContext)) or any(obj is g for g in self._safe_globals):
            return True
        # Methods of plain values ('x'.upper(), d.items(), loop.cycle(...)) are fine; methods
        # of anything else (a model's query, a service) are not, whatever variables we get.
        target = getattr(obj, "__wrapped__", obj)
        owner = getattr(target, "__self__", None)
        if owner is None or isinstance(owner, (types.ModuleType, type)):
            return False
        return isinstance(owner, _PLAIN_VALUES + (LoopContext, Cycler, Joiner))

    def is_safe_attribute(self, obj, attr, value) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        # Database handles and secrets have no place in a template, even if a caller
        # passes a live model instead of the plain views the catalogue builds.
        lowered = attr.lower()
        return not (lowered in ("query", "query_class", "metadata", "registry", "session")
                    or "password" in lowered or "secret" in lowered)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
        _check_numbers(args)
        _check_numbers(kwargs.values())
        target = getattr(__obj, "__wrapped__", None)
        if getattr(target, "__name__", "") in ("format", "format_map"):
            _check_format(getattr(target, "__self__", None))
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context, operator, left, right):
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64 or \
                    isinstance(left, int) and left.bit_length() > 4096:
                raise SecurityError("powers are limited in templates")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > MAX_SIZE:
                    raise SecurityError(f"a value longer than {MAX_SIZE} items")
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > 4096:
                raise SecurityError("numbers this large are not allowed in templates")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                    and len(left) + len(right) > MAX_SIZE:
                raise SecurityError(f"a value longer than {MAX_SIZE} items")
        elif operator == "%":
            _check_format(left)
            _check_numbers(right if isinstance(right, tuple) else (right,))
        result = super().call_binop(context, operator, left, right)
        _check_size(result)
        return result


@lru_cache(maxsize=None)
def _environment(kind: str) -> _Sandbox:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    return _Sandbox(
        autoescape=(kind == "html"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # None prints as nothing: "{{ call.assigned_group.name }}" is common on optional data.
        finalize=lambda value: "" if value is None else value,
    )


@lru_cache(maxsize=512)
def _compile(kind: str, source: str):
    # The sender renders the same few templates thousands of times: compile each once.
    try:
        return _environment(kind).from_string(source)
    except TemplateSyntaxError as error:
        raise TemplateError(error.message or str(error), error.lineno) from None
