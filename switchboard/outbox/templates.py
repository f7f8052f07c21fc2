"""Renders the mail templates admins write, in a Jinja2 sandbox they cannot climb out of.

Subjects and text bodies render without escaping, HTML bodies with autoescape. Anything a
template does wrong (a syntax error, an unknown variable, a reach for Python internals, a
runaway size) becomes a TemplateError with the template line, never a server error.
"""

from __future__ import annotations

import re
import string
import time
import types
from collections.abc import Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from datetime import date, datetime, time as clock_time, timedelta
from decimal import Decimal
from functools import lru_cache, wraps
from itertools import islice

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Cycler, Joiner, Namespace
from markupsafe import Markup

KINDS = ("subject", "text", "html")

# Limits that keep one template from eating the sender's or the portal's memory or time. They
# are one budget per render (a message's subject, text and html share it: see render_budget).
MAX_OUTPUT = 500_000  # characters one template may produce
MAX_SIZE = 500_000  # longest string or list one expression may build (no use past MAX_OUTPUT)
MAX_NUMBER_ARGUMENT = 100_000  # largest number passed to a filter or method (widths, counts)
MAX_STEPS = 1_000_000  # loop iterations, filters and calls, all together (a step is ~1 us)
MAX_BUILT = 5_000_000  # characters and items built or written, all together
MAX_SECONDS = 1.0  # wall clock, checked at every step
MAX_TOKENS = 3_000  # names, operators and tags in one template (the largest default has 80)
NESTED_TOO_DEEPLY = "the template is nested too deeply"

_PLAIN_VALUES = (str, int, float, bool, list, tuple, dict, set, frozenset, date, datetime,
                 clock_time, timedelta, Decimal, Markup, types.SimpleNamespace)
_PERCENT_STAR = re.compile(r"%[-#0 +]*\*|%[-#0 +]*\d*\.\*")
_PERCENT_SPEC = re.compile(r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\d*)(?:\.(?P<precision>\d*))?"
                           r"[hlL]?(?P<conversion>.)", re.DOTALL)
_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?")


class TemplateError(Exception):
    """A template could not be rendered; `str()` is a message fit for the admin who wrote it."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


BUDGET_MESSAGE = "over the render budget"  # how every limit refusal starts, after the line


class OverBudget(SecurityError):
    """A render went past one of its limits (steps, size, time); the message says which."""


class _Budget:
    """What one render may still spend. Checked before anything big is built, so a refused
    template costs little: no 400 MB string is made only to be measured."""

    __slots__ = ("steps", "built", "deadline", "seconds")

    def __init__(self, seconds: float = MAX_SECONDS):
        self.steps = MAX_STEPS
        self.built = MAX_BUILT
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def step(self, steps: int = 1) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise OverBudget(f"too much work: more than {MAX_STEPS:,} steps "
                             "(loop iterations, filters and calls)")
        if time.monotonic() > self.deadline:
            raise OverBudget(f"too slow: still rendering after {self.seconds:g} s")

    def fits(self, size: int) -> None:
        """Refuse, before it is built, a value of about `size` characters or items."""
        if size > MAX_SIZE:
            raise OverBudget(f"too long: a value of {size:,} characters or items "
                             f"(limit {MAX_SIZE:,})")
        if size > self.built:
            self._over()

    def charge(self, size: int) -> None:
        self.built -= size
        if self.built < 0:
            self._over()

    def _over(self):
        raise OverBudget(f"too much text built: more than {MAX_BUILT:,} characters "
                         "and items in all")

    def took(self, value, steps_per_item: int = 1):
        """Account for a value just built; iterators are counted item by item as they run."""
        if isinstance(value, (str, list, tuple, dict, set, frozenset)):
            size = len(value)
            if size > MAX_SIZE:
                self.fits(size)
            self.charge(size)
        elif isinstance(value, Iterator) and not isinstance(value, _Steps):
            return _Steps(value, self, steps_per_item)
        return value


class _Steps:
    """An iterator that charges the budget a step for every item: every `for` loop runs on
    one, so nested loops add up, and so does a chain of lazy filters (map, select...)."""

    __slots__ = ("_items", "_budget", "_cost", "_chars")

    def __init__(self, items: Iterable, budget: _Budget, cost: int = 1, chars: int = 0):
        self._items = iter(items)
        self._budget = budget
        self._cost = cost
        self._chars = chars  # template text the loop body writes on each pass

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._items)
        budget = self._budget
        budget.steps -= self._cost  # step(), inlined: this runs for every pass of every loop
        if budget.steps < 0 or time.monotonic() > budget.deadline:
            budget.step(0)
        if self._chars:
            budget.charge(self._chars)
        return item


_budget: ContextVar[_Budget] = ContextVar("template_budget")


class render_budget:  # noqa: N801 (used like a function: `with render_budget():`)
    """One budget shared by every render inside (a message's subject, text and html, or a
    preview), so a message as a whole stops within `seconds`. Nested: the outer one counts.
    A class rather than @contextmanager: it runs for every mail sent, and this is cheaper."""

    __slots__ = ("seconds", "token")

    def __init__(self, seconds: float = MAX_SECONDS):
        self.seconds = seconds
        self.token = None

    def __enter__(self):
        if _budget.get(None) is None:
            self.token = _budget.set(_Budget(self.seconds))

    def __exit__(self, *_):
        if self.token is not None:
            _budget.reset(self.token)
            self.token = None


def _current() -> _Budget:
    budget = _budget.get(None)
    # Outside a render only the compiler's constant folding calls filters; it gets a budget
    # of its own (whatever it cannot fold is done at render time, under the render's budget).
    return budget if budget is not None else _Budget()


def render(template_source: str, variables: Mapping[str, object], *, kind: str = "text") -> str:
    """Render a subject, text or html template with the given variables.

    Subjects come back as one line. Raises TemplateError for every template mistake, and for
    a template over its budget (the message says which limit).
    """
    template = _compile(kind, template_source)
    # render_budget(), inlined (every mail renders two or three templates): a budget of its
    # own unless the caller's covers a whole message.
    token = _budget.set(_Budget()) if _budget.get(None) is None else None
    try:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(dict(variables)):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise OverBudget(f"too much output: more than {MAX_OUTPUT:,} characters")
            chunks.append(chunk)
        result = "".join(chunks)
    except TemplateError:
        raise
    except Exception as error:  # a template must never take the caller down
        raise _template_error(error) from None
    finally:
        if token is not None:
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
        _check_length(env, source)
        tree = env.parse(source)
    except TemplateSyntaxError as error:
        return [f"line {error.lineno}: {error.message}"]
    except TemplateError as error:
        return [str(error)]
    except RecursionError:
        return [f"{BUDGET_MESSAGE}: {NESTED_TOO_DEEPLY}"]
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


def check_length(source: str) -> list[str]:
    """The size check alone (see _check_length), for callers that parse a template their
    own way: a problem to show, or nothing."""
    try:
        _check_length(_environment("text"), source)
    except TemplateError as error:
        return [str(error)]
    except TemplateSyntaxError:
        pass  # reported with its line by check_template
    return []


def _template_error(error: Exception) -> TemplateError:
    line = _template_line(error)
    if isinstance(error, TemplateSyntaxError):
        return TemplateError(error.message or str(error), error.lineno)
    if isinstance(error, OverBudget):
        return TemplateError(f"{BUDGET_MESSAGE}: {error}", line)
    if isinstance(error, SecurityError):
        return TemplateError(f"not allowed in a template: {error}", line)
    if isinstance(error, UndefinedError):
        return TemplateError(f"unknown variable or attribute: {error}", line)
    if isinstance(error, OverflowError):
        return TemplateError(str(error), line)
    if isinstance(error, RecursionError):
        return TemplateError(f"{BUDGET_MESSAGE}: the template calls itself too deeply", line)
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
#
# Every way a template can spend time or memory passes through one of these hooks, each
# charging the render's budget: `for` loops (the compiler wraps each iterable), filters and
# tests, method and macro calls, the operators + * ** % and ~, and every value written out.
# Whatever could build something big is sized from its inputs first and refused before it
# is built; everything built is counted after; the clock is read at every step.

def _text_size(value, limit: int = MAX_BUILT) -> int:
    """About how long str(value) is, found without building it: a list holding one long
    string 100,000 times is cheap to hold and enormous to print. Stops counting past limit."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 24
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        total = 2
        for item in (value.items() if isinstance(value, dict) else value):
            total += _text_size(item, limit - total) + 2
            if total > limit:
                break
        return total
    return 64  # dates, views, numbers of other kinds: short, and checked again once built


def _length(value) -> int:
    try:
        return len(value) if isinstance(value, Sized) else 0
    except Exception:  # an undefined value: the filter itself will say so
        return 0


def _number(value) -> int:
    return int(value) if isinstance(value, (int, float)) else 0


def _text(value) -> str:
    """value as the filter will see it, once it is known to be of a reasonable size."""
    if isinstance(value, str):
        return value
    _current().fits(_text_size(value, MAX_SIZE + 1))
    return str(value)


def _materialize(items, budget: _Budget) -> list:
    """A lazy iterable as a list, so what a filter will do with it can be sized first."""
    listed = list(islice(items, MAX_SIZE + 1))
    budget.took(listed)
    return listed


def _digits(text: str | None) -> int:
    # More digits than any width we allow: say so without converting a huge number.
    return MAX_SIZE + 1 if text and len(text) > 7 else int(text or 0)


def _percent_size(fmt: str, args) -> int:
    """Upper bound of len(fmt % args): the widths and precisions asked plus the arguments."""
    if _PERCENT_STAR.search(fmt):
        raise OverBudget("format widths taken from arguments ('*') are not allowed")
    if isinstance(args, tuple):
        positional, mapping = args, None
    else:
        positional, mapping = (args,), args if isinstance(args, Mapping) else None
    size, position = len(fmt), 0
    for spec in _PERCENT_SPEC.finditer(fmt):
        conversion = spec["conversion"]
        if conversion == "%":
            continue
        if spec["key"] is not None and mapping is not None:
            value = mapping.get(spec["key"])
        elif position < len(positional):
            value, position = positional[position], position + 1
        else:
            value = None
        text = _text_size(value, MAX_SIZE + 1) * (10 if conversion in "ra" else 1)
        if conversion in "eEfFgG":
            text = max(text, 330)  # '%f' % 1e308 has 309 digits before the point
        size += max(_digits(spec["width"]), text + _digits(spec["precision"]))
    return size


def _format_size(fmt: str, args, kwargs) -> int:
    """Upper bound of len(fmt.format(*args, **kwargs)), the same way."""
    values = (*args, *kwargs.values())
    longest = max((_text_size(v, MAX_SIZE + 1) for v in values), default=0)
    # A width taken from an argument ('{:{}}') is as wide as the largest number given.
    widest = max([abs(v) for v in values if isinstance(v, int)] + [MAX_NUMBER_ARGUMENT])
    size = 0
    for literal, field, spec, conversion in string.Formatter().parse(fmt):
        size += len(literal)
        if field is None:
            continue
        text = longest * (10 if conversion in ("r", "a") else 1)
        if "{" in (spec or ""):
            size += spec.count("{") * widest + text
            continue
        match = _FORMAT_SPEC.match(spec or "")
        width, precision = (_digits(match["width"]), _digits(match["precision"])) if match else (0, 0)
        size += max(width, text + precision + 330 * bool(precision))
    return size


def _replace_size(s, old, new, count=None) -> int:
    s, old, new = _text(s), _text(old), _text(new)
    hits = s.count(old) if old else len(s) + 1
    if count is not None and _number(count) >= 0:
        hits = min(hits, _number(count))
    return len(s) + hits * max(0, len(new) - len(old))


def _join_size(items, separator="", attribute=None) -> int:
    size = max(0, _length(items) - 1) * _text_size(separator)
    if attribute is None:
        for item in items:
            size += _text_size(item, MAX_SIZE + 1)
            if size > MAX_SIZE:
                break
    return size


def _indent_size(s, width=4, first=False, blank=False) -> int:
    s = _text(s)
    return len(s) + (s.count("\n") + 1) * (len(width) if isinstance(width, str) else _number(width))


def _wordwrap_size(s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True):
    s = _text(s)
    per_line = len(s) // max(1, _number(width)) + s.count("\n") + 1
    _current().step(20 * per_line)  # textwrap costs ~20 us a line it makes, ~1 us a character
    lines = min(len(s), per_line + s.count(" ") + s.count("\t")) + 1  # at most one a word
    return len(s) + lines * (1 if wrapstring is None else len(_text(wrapstring)))


def _sum_size(items, attribute=None, start=0) -> int:
    if attribute is not None or not isinstance(start, (str, list, tuple)):
        return 0
    size = len(start) + sum(len(item) for item in items if isinstance(item, Sized))
    _current().step(len(items) * size // 1000)  # each + copies everything so far
    return size


# Result size, from the inputs, of the filters and str methods that can build more than
# they are given. Called with the filter's arguments after the value it filters.
_FILTER_SIZE = {
    "replace": _replace_size,
    "join": _join_size,
    "center": lambda value, width=80: max(_text_size(value), _number(width)),
    "indent": _indent_size,
    "wordwrap": _wordwrap_size,
    "format": lambda value, *args, **kwargs: _percent_size(_text(value), kwargs or args),
    "sum": _sum_size,
    "batch": lambda value, linecount, fill_with=None: _length(value) + _number(linecount),
    "slice": lambda value, slices, fill_with=None: _length(value) + _number(slices),
    "list": lambda value: _length(value),
    **{name: lambda value, *args, **kwargs: _text_size(value, MAX_SIZE + 1)
       for name in ("string", "pprint", "tojson", "xmlattr", "urlize", "urlencode", "escape",
                    "e", "forceescape", "title", "capitalize", "upper", "lower", "trim",
                    "striptags", "reverse", "truncate")},
}
# Characters built as keys by sorting-like filters (each item lower-cased), charged before.
_FILTER_WORK = {name: lambda value, *args, **kwargs: _text_size(value)
                for name in ("sort", "dictsort", "unique", "groupby", "min", "max")}
# Steps per input item (character or element) of filters whose cost is per item in Python
# (measured: sorting 100,000 strings ~1 s, title ~1.4 us a character); the rest cost a step.
_FILTER_STEPS = {"wordwrap": 1, "urlize": 6, "title": 2, "striptags": 2, "tojson": 2,
                 "pprint": 15, "xmlattr": 15, "sort": 10, "dictsort": 4, "unique": 6,
                 "groupby": 7, "min": 3, "max": 3, "sum": 7, "join": 1, "batch": 1,
                 "indent": 1, "urlencode": 1, "wordcount": 1, "list": 1}
# Filters that consume their whole input: a lazy one is listed first, so it can be sized.
_CONSUMING = frozenset({"join", "sum", "sort", "unique", "groupby", "min", "max", "batch",
                        "slice", "list", "pprint", "tojson", "length", "count", "last",
                        "random"})
# Lazy filters: steps per item they yield (each runs a test, a filter or a lookup on it).
_LAZY_STEPS = {"map": 10, "select": 5, "reject": 5, "selectattr": 10, "rejectattr": 10,
               "unique": 6, "items": 1, "batch": 1, "slice": 1, "reverse": 1}

_METHOD_SIZE = {
    "ljust": lambda s, width, fillchar=" ": max(len(s), _number(width)),
    "rjust": lambda s, width, fillchar=" ": max(len(s), _number(width)),
    "center": lambda s, width, fillchar=" ": max(len(s), _number(width)),
    "zfill": lambda s, width: max(len(s), _number(width)),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * max(0, _number(tabsize)),
    "replace": lambda s, old, new, count=-1: _replace_size(s, old, new, count),
    "join": lambda s, items: _join_size(items, s),
    "format": lambda s, *args, **kwargs: _format_size(s, args, kwargs),
    "format_map": lambda s, mapping: _format_size(s, (), mapping),
    "translate": lambda s, table: len(s) * max(
        [1] + [len(v) for v in table.values() if isinstance(v, str)]),
    "encode": lambda s, *args, **kwargs: 4 * len(s),
}


def _estimate(function, args, kwargs) -> int | None:
    try:
        return function(*args, **kwargs)
    except OverBudget:
        raise
    except Exception:  # arguments the real call refuses with its own, clearer error
        return None


def _bounded_range(*args: int) -> range:
    _check_numbers(args)
    rng = range(*args)
    if len(rng) > MAX_NUMBER_ARGUMENT:
        raise OverflowError(f"range() is limited to {MAX_NUMBER_ARGUMENT} items in templates")
    return rng


class _BoundedNamespace(Namespace):
    """`namespace()` whose values cannot grow past MAX_SIZE (loops that double a string)."""

    def __setitem__(self, name, value):
        _check_size(value)
        super().__setitem__(name, value)


def _check_size(value) -> None:
    if isinstance(value, (str, list, tuple, dict, set)) and len(value) > MAX_SIZE:
        raise OverBudget(f"too long: a value of {len(value):,} characters or items "
                         f"(limit {MAX_SIZE:,})")


def _check_numbers(values) -> None:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and abs(value) > MAX_NUMBER_ARGUMENT:
            raise OverBudget(f"the number {value} is too large here "
                             f"(limit {MAX_NUMBER_ARGUMENT})")


def _guard_filter(name, function):
    # pass_context / pass_environment / pass_eval_context put one argument before the value.
    value_at = 1 if getattr(function, "jinja_pass_arg", None) else 0
    result_size, work_size = _FILTER_SIZE.get(name), _FILTER_WORK.get(name)
    per_item, lazy_steps = _FILTER_STEPS.get(name, 0), _LAZY_STEPS.get(name, 1)
    consumes = name in _CONSUMING
    # Numbers given to format are printed, not used as widths: its size estimate covers them.
    checks_numbers = name != "format"

    @wraps(function)
    def guarded(*args, **kwargs):
        budget = _current()
        if checks_numbers:
            _check_numbers(args[value_at + 1:])
            _check_numbers(kwargs.values())
        if len(args) > value_at:
            value = args[value_at]
            if consumes and not isinstance(value, Sized):
                value = _materialize(value, budget)
                args = (*args[:value_at], value, *args[value_at + 1:])
            budget.step(1 + per_item * _length(value))
            if result_size is not None:
                size = _estimate(result_size, args[value_at:], kwargs)
                if size is not None:
                    budget.fits(size)
            if work_size is not None:
                size = _estimate(work_size, args[value_at:], kwargs)
                if size is not None:
                    budget.charge(size)
        else:
            budget.step()
        return budget.took(function(*args, **kwargs), lazy_steps)

    return guarded


def _guard_test(function):
    @wraps(function)
    def guarded(*args, **kwargs):
        _current().step()
        return function(*args, **kwargs)

    return guarded


def _format_date(value, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (datetime, date)):
        return value.strftime(fmt).strip()
    return str(value)


def _finalize(value):
    # Every {{ ... }} passes here before it is written, buffered ({% set %}, macros) or not.
    if value is None:  # "{{ call.assigned_group.name }}" is common on optional data
        return ""
    budget = _budget.get(None)
    if budget is not None:  # None: constants folded while compiling
        size = len(value) if type(value) is str else _text_size(value, MAX_SIZE + 1)
        if size > MAX_SIZE:
            budget.fits(size)
        budget.built -= size  # charge(), inlined: this runs for every {{ ... }}
        if budget.built < 0:
            budget.charge(0)
    return value


class _BudgetedCodeGenerator(CodeGenerator):
    """Jinja's compiler with two changes: every `for` loop iterates through the budget (a
    step per pass, plus the template text its body writes), and `~` sizes its parts before
    joining them."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        chars = sum(len(data.data) for child in node.body
                    for data in child.find_all(nodes.TemplateData))
        # Jinja forbids new node types, so the iterable is marked and wrapped where written.
        counted = self.__dict__.setdefault("_counted", {})
        counted[id(node.iter)] = (node.iter, chars)
        try:
            super().visit_For(node, frame)
        finally:
            counted.pop(id(node.iter), None)

    def visit(self, node, *args, **kwargs):
        mark = self.__dict__.get("_counted", {}).pop(id(node), None)
        if mark is None or mark[0] is not node:
            return super().visit(node, *args, **kwargs)
        self.write("environment.counted(")
        super().visit(node, *args, **kwargs)
        self.write(f", {mark[1]:d})")
        return None

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # As Jinja's own, with the join function handed to environment.sized_concat.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.sized_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "%"})
    code_generator_class = _BudgetedCodeGenerator

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.globals.pop("lipsum", None)  # bulk text generator: no use in mail, easy to abuse
        self.globals["range"] = _bounded_range
        self.globals["namespace"] = _BoundedNamespace
        self.filters["datetime"] = _format_date
        self.filters["date"] = lambda value, fmt="%Y-%m-%d": _format_date(value, fmt)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.tests = {name: _guard_test(f) for name, f in self.tests.items()}
        self._safe_globals = tuple(self.globals.values())

    @staticmethod
    def counted(iterable, chars: int) -> _Steps:
        return _Steps(iterable, _current(), 1, chars)

    @staticmethod
    def sized_concat(join, parts):
        budget = _current()
        budget.step()
        budget.fits(sum(_text_size(part, MAX_SIZE + 1) for part in parts))
        return budget.took(join(parts))

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
        budget = _current()
        budget.step()
        # str.format comes wrapped by the sandbox; the string it formats is the method's owner.
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        name = getattr(target, "__name__", "") if isinstance(owner, str) else ""
        if name not in ("format", "format_map"):  # what these print, their estimate covers
            _check_numbers(args)
            _check_numbers(kwargs.values())
        if isinstance(owner, str):
            if name == "join" and args and not isinstance(args[0], Sized):
                args = (_materialize(args[0], budget), *args[1:])
            estimate = _METHOD_SIZE.get(name)
            if estimate is not None:
                size = _estimate(estimate, (owner, *args), kwargs)
                if size is not None:
                    budget.fits(size)
        elif isinstance(__obj, LoopContext) and args:
            args = (_Steps(args[0], budget), *args[1:])  # loop(children) in a recursive loop
        return budget.took(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context, operator, left, right):
        budget = _current()
        budget.step()
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64 or \
                    isinstance(left, int) and left.bit_length() > 4096:
                raise OverBudget("powers are limited in templates")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    budget.fits(len(seq) * max(times, 0))
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > 4096:
                raise OverBudget("numbers this large are not allowed in templates")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                budget.fits(len(left) + len(right))
            elif isinstance(left, int) and isinstance(right, int) \
                    and max(left.bit_length(), right.bit_length()) > 4096:
                raise OverBudget("numbers this large are not allowed in templates")
        elif operator == "%" and isinstance(left, str):
            budget.fits(_percent_size(left, right))
        return budget.took(super().call_binop(context, operator, left, right))


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
        finalize=_finalize,
    )


def _check_length(env: _Sandbox, source: str) -> None:
    """Refuse a template with more than MAX_TOKENS names, operators and tags before Jinja
    parses and compiles it: that costs ~100 us a token, so 100,000 characters of `{{ x }}`
    took seconds. Plain text between tags is cheap and not counted."""
    tokens = 0
    for _line, kind, _value in env.lex(source):
        if kind not in ("data", "whitespace"):
            tokens += 1
            if tokens > MAX_TOKENS:
                raise TemplateError(f"{BUDGET_MESSAGE}: too long: more than {MAX_TOKENS:,} "
                                    "names, operators and tags in one template")


@lru_cache(maxsize=512)
def _compile(kind: str, source: str):
    # The sender renders the same few templates thousands of times: compile each once.
    env = _environment(kind)
    try:
        _check_length(env, source)
        # Jinja folds constant expressions while compiling, through the same filters: give
        # that a budget too (what it gives up on is done at render time, under the render's).
        with render_budget():
            return env.from_string(source)
    except TemplateSyntaxError as error:
        raise TemplateError(error.message or str(error), error.lineno) from None
    except (RecursionError, SyntaxError):  # Python's own nesting limits, on the compiled code
        raise TemplateError(f"{BUDGET_MESSAGE}: {NESTED_TOO_DEEPLY}") from None
