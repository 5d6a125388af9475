"""Tokens and a token cursor for unstuck's small call-syntax languages.

Two text forms share them: schedules (``"warmup(cosine(10000), 500)"``,
:mod:`unstuck.schedules.parse`) and optimizers (``"adam(lr=1e-3, betas=(0.9, 0.99))"``,
:mod:`unstuck.lab.optimizer_specs`). Each has its own grammar and recursive-descent parser; this
module holds what they have in common: the tokens (names, numbers, quoted strings, the
punctuation ``( ) [ ] , =``), the constants ``True``, ``False``, ``None``, and a cursor over the
tokens whose errors show the text with a caret under the bad token. Nothing is ever evaluated.

Example:
    >>> [t.text for t in tokenize("cosine(total=1e3, shape='x')", TextFormError)]
    ['cosine', '(', 'total', '=', '1e3', ',', 'shape', '=', "'x'", ')', '']
    >>> Cursor("f(]").expect("(", "after f")
    Traceback (most recent call last):
    ...
    unstuck.textform.TextFormError: expected '(' after f, got 'f'
      f(]
      ^
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["CONSTANTS", "Cursor", "TextFormError", "Token", "number", "tokenize"]

CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None}
"""The names that stand for Python constants."""


class TextFormError(ValueError):
    """A text that does not parse: ``text``, ``position`` and ``length`` locate the bad token,
    ``reason`` says what is wrong, and the message shows the text with a caret under it."""

    def __init__(self, message: str, text: str, position: int, length: int = 1) -> None:
        self.reason = message
        self.text = text
        self.position = position
        self.length = max(1, length)
        super().__init__(f"{message}\n  {text}\n  {' ' * position}{'^' * self.length}")


class Token(NamedTuple):
    """One token: ``kind`` is NAME, NUMBER, STRING, PUNCT or END (after the last one)."""

    kind: str
    text: str
    position: int


def _pattern(dotted_names: bool) -> re.Pattern[str]:
    name = r"[A-Za-z_][A-Za-z_0-9]*"
    if dotted_names:
        name += r"(?:\.[A-Za-z_][A-Za-z_0-9]*)*"
    return re.compile(
        rf"""
        (?P<space>\s+)
      | (?P<NUMBER>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<NAME>{name})
      | (?P<STRING>"[^"\\]*"|'[^'\\]*')
      | (?P<PUNCT>[()\[\],=])
        """,
        re.VERBOSE,
    )


_PATTERNS = {dotted: _pattern(dotted) for dotted in (False, True)}


def tokenize(
    text: str, error: type[TextFormError], *, dotted_names: bool = False
) -> list[Token]:
    """The tokens of ``text``, then an END token; ``dotted_names``: a name may hold dots
    (``torch.adam``).

    Raises:
        error: an unterminated string or a character outside the language.
    """
    pattern = _PATTERNS[dotted_names]
    tokens = []
    position = 0
    while position < len(text):
        match = pattern.match(text, position)
        if match is None:
            what = "unterminated string" if text[position] in "\"'" else (
                f"unexpected character {text[position]!r}")
            raise error(what, text, position)
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup or "", match.group(), position))
        position = match.end()
    tokens.append(Token("END", "", len(text)))
    return tokens


def number(text: str) -> int | float:
    """A NUMBER token's value: an ``int`` when written as one, else a ``float``."""
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)


class Cursor:
    """A position in the tokens of ``text``, with the helpers a recursive-descent parser needs;
    errors are of type :attr:`error_type`."""

    error_type: type[TextFormError] = TextFormError

    def __init__(self, text: str, *, dotted_names: bool = False) -> None:
        self.text = text
        self.tokens = tokenize(text, self.error_type, dotted_names=dotted_names)
        self.index = 0

    @property
    def token(self) -> Token:
        """The current token."""
        return self.tokens[self.index]

    def advance(self) -> Token:
        """Move past the current token; returns it."""
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, punct: str) -> bool:
        """Whether the current token is the punctuation ``punct``."""
        return self.token.kind == "PUNCT" and self.token.text == punct

    def error(self, message: str, token: Token) -> TextFormError:
        """An error pointing at ``token``."""
        return self.error_type(message, self.text, token.position, len(token.text))

    def describe(self, token: Token) -> str:
        """``token`` as an error message names it."""
        return "the end of the text" if token.kind == "END" else repr(token.text)

    def expect(self, punct: str, context: str) -> Token:
        """Move past the punctuation ``punct``, or raise naming the ``context``."""
        token = self.token
        if token.kind != "PUNCT" or token.text != punct:
            raise self.error(f"expected {punct!r} {context}, got {self.describe(token)}", token)
        return self.advance()
