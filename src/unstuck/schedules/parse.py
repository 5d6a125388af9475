"""The text form of a schedule, for the command line and config files.

``parse("warmup(cosine(10000), 500)")`` gives ``warmup(cosine(total=10000), steps=500)``: a call
is a schedule name from :data:`~unstuck.schedules.SCHEDULES` with positional and/or
keyword arguments named as the schedule's own arguments. Values are numbers (``4000``, ``0.1``,
``1e-3``, ``-2``), strings in single or double quotes (``shape="cosine"``), ``True``, ``False``,
``None``, lists in brackets (``milestones=[30, 80]``) and other schedules. Every schedule's
``repr`` is its text form, so ``parse(repr(s)) == s``.

The grammar (a tokenizer and a recursive-descent parser; nothing is evaluated)::

    schedule := NAME "(" [argument ("," argument)* [","]] ")"
    argument := [NAME "="] value
    value    := schedule | NUMBER | STRING | True | False | None | list
    list     := "[" [value ("," value)* [","]] "]"

A mistake raises :class:`ScheduleSyntaxError` (a ``ValueError``) whose message shows the text
with a caret under the bad token.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from unstuck.schedules.base import Schedule
from unstuck.schedules.registry import SCHEDULES
from unstuck.textform import CONSTANTS, Cursor, TextFormError, Token, number

__all__ = ["ScheduleSyntaxError", "parse"]


class ScheduleSyntaxError(TextFormError):
    """A schedule's text form that does not parse; ``text``, ``position`` and ``length`` locate
    the bad token, and the message shows it with a caret under it.

    Example:
        >>> parse("cosin(100)")
        Traceback (most recent call last):
        ...
        unstuck.schedules.parse.ScheduleSyntaxError: unknown schedule 'cosin' ...
    """


@dataclasses.dataclass
class _Value:
    """A parsed argument value and the token where it starts (to point errors at it)."""

    value: Any
    token: Token


class _Parser(Cursor):
    error_type = ScheduleSyntaxError

    # -- grammar -------------------------------------------------------------------------------

    def parse(self) -> Schedule:
        start = self.token
        if start.kind == "END":
            raise self.error("empty schedule text; expected a schedule such as "
                             "'cosine(total=1000)'", start)
        result = self.value()
        if not isinstance(result.value, Schedule):
            raise self.error(
                f"expected a schedule such as 'cosine(total=1000)', got {start.text!r}", start
            )
        if self.token.kind != "END":
            if self.at(")"):
                raise self.error("unbalanced ')': no '(' to close", self.token)
            raise self.error(
                f"unexpected {self.describe(self.token)} after the end of the schedule",
                self.token,
            )
        return result.value

    def value(self) -> _Value:
        token = self.token
        if token.kind == "NUMBER":
            self.advance()
            return _Value(number(token.text), token)
        if token.kind == "STRING":
            self.advance()
            return _Value(token.text[1:-1], token)
        if token.kind == "NAME":
            if token.text in CONSTANTS:
                self.advance()
                return _Value(CONSTANTS[token.text], token)
            return _Value(self.call(), token)
        if self.at("["):
            return _Value(self.list(), token)
        raise self.error(f"expected a value, got {self.describe(token)}", token)

    def list(self) -> list[Any]:
        opening = self.advance()
        items: list[Any] = []
        while not self.at("]"):
            if self.token.kind == "END":
                raise self.error("unbalanced '[': no ']' closes it", opening)
            items.append(self.value().value)
            if self.token.kind == "END":
                raise self.error("unbalanced '[': no ']' closes it", opening)
            if not self.at("]"):
                self.expect(",", "between list items")
        self.advance()
        return items

    def call(self) -> Schedule:
        name = self.advance()
        cls = SCHEDULES.get(name.text)
        if cls is None:
            close = difflib.get_close_matches(name.text, SCHEDULES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(
                f"unknown schedule {name.text!r}{hint}; known: {', '.join(sorted(SCHEDULES))}",
                name,
            )
        if not self.at("("):
            raise self.error(
                f"expected '(' after {name.text!r}, got {self.describe(self.token)} "
                f"(write {name.text}(...))",
                self.token,
            )
        opening = self.advance()
        fields = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        required = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.init and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        signature = f"{name.text}({', '.join(fields)})"
        arguments: dict[str, _Value] = {}
        keyword_seen = False
        positional = 0
        while not self.at(")"):
            if self.token.kind == "END":
                raise self.error("unbalanced '(': no ')' closes it", opening)
            token = self.token
            nxt = self.tokens[self.index + 1]
            if token.kind == "NAME" and nxt.kind == "PUNCT" and nxt.text == "=":
                if token.text not in fields:
                    close = difflib.get_close_matches(token.text, fields, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise self.error(
                        f"unknown argument {token.text!r} of {signature}{hint}", token
                    )
                if token.text in arguments:
                    raise self.error(
                        f"argument {token.text!r} of {signature} given twice", token
                    )
                self.index += 2
                keyword_seen = True
                arguments[token.text] = self.value()
            else:
                if keyword_seen:
                    raise self.error(
                        f"positional argument after keyword arguments in {signature}", token
                    )
                if positional >= len(fields):
                    raise self.error(
                        f"{signature} takes at most {len(fields)} argument"
                        f"{'s' if len(fields) != 1 else ''}, got more", token
                    )
                arguments[fields[positional]] = self.value()
                positional += 1
            if self.token.kind == "END":
                raise self.error("unbalanced '(': no ')' closes it", opening)
            if not self.at(")"):
                self.expect(",", f"between the arguments of {name.text}(...)")
        closing = self.advance()
        missing = [f for f in required if f not in arguments]
        if missing:
            raise self.error(
                f"{signature} is missing the argument"
                f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}",
                closing,
            )
        try:
            return cls(**{key: arg.value for key, arg in arguments.items()})
        except (TypeError, ValueError) as exc:
            # point at the argument the message names ("gamma must be > 0, got -1")
            named = re.match(r"[A-Za-z_]+", str(exc))
            where = arguments[named.group()].token if named and named.group() in arguments else name
            raise self.error(f"{name.text}: {exc}", where) from exc



def parse(text: str) -> Schedule:
    """The schedule written in ``text``; the inverse of ``repr`` on schedules.

    Arguments may be given by position, in the order of the schedule's signature, or by name.
    Nothing in the text is evaluated as Python.

    Example:
        >>> parse("warmup(cosine(10000), 500)")
        warmup(cosine(total=10000), steps=500)
        >>> parse("noam(d_model=512, warmup=4000)")(3999) > 6.98e-4
        True

    Raises:
        ScheduleSyntaxError: a ``ValueError`` whose message shows ``text`` with a caret under the
            bad token (unknown name, unknown or repeated argument, missing or extra argument, bad
            value, unbalanced brackets, trailing text).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__} {text!r}")
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise ScheduleSyntaxError("schedule nested too deeply", text, 0) from None
