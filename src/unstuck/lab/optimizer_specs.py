"""Optimizers by name with keyword options, in a text form: ``"sgd(lr=0.01, momentum=0.5)"``.

:data:`OPTIMIZERS` maps a lower-case name to an :class:`OptimizerEntry` (the class, the options
the name fixes, a one-line description): unstuck's optimizers (``sgd``, ``momentum``,
``nesterov``, ``adagrad``, ``rmsprop``, ``adam``, ``adamw``, ``radam``, ``ranger``, ``lars``,
``rangerlars``), the lecture's form of Adagrad (``adagrad_rms``, :class:`AdagradRMS`, for the
error-surface lesson) and every ``torch.optim`` optimizer as ``torch.<lower-case class name>``
(``torch.sgd``, ``torch.adam``, ``torch.lbfgs``, ...).

:func:`parse_optimizer` reads one spec, :func:`parse_optimizers` a comma-separated list; an
:class:`OptimizerSpec` builds the optimizer over parameters. The grammar (a tokenizer and a
recursive-descent parser, as in :mod:`unstuck.schedules.parse`; nothing is evaluated)::

    specs  := spec ("," spec)* [","]
    spec   := NAME ["(" [option ("," option)* [","]] ")"]      NAME may hold dots: torch.adam
    option := NAME "=" value
    value  := NUMBER | STRING | True | False | None | "(" values ")" | "[" values "]"

Lists and tuples both become tuples (``betas=(0.9, 0.99)`` or ``betas=[0.9, 0.99]``). A mistake
raises :class:`OptimizerSpecError` (a ``ValueError``) showing the text with a caret under it.

Example:
    >>> spec = parse_optimizer("sgd(lr=0.01, momentum=0.5)")
    >>> spec.name, dict(spec.options)
    ('sgd', {'lr': 0.01, 'momentum': 0.5})
    >>> [s.label for s in parse_optimizers("sgd(lr=0.01), momentum, torch.adam")]
    ['sgd(lr=0.01)', 'momentum', 'torch.adam']
    >>> import torch
    >>> point = torch.zeros(2, requires_grad=True)
    >>> opt = parse_optimizer("momentum").build([point], default_lr=0.1)
    >>> opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
    (0.1, 0.9)
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch

import unstuck.optim as uo
from unstuck.optim import AdagradRMS
from unstuck.textform import CONSTANTS, Cursor, TextFormError, number

__all__ = [
    "OPTIMIZERS",
    "OptimizerEntry",
    "OptimizerSpec",
    "OptimizerSpecError",
    "parse_optimizer",
    "parse_optimizers",
]


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One named optimizer: its class, the options its name fixes, and a one-line description.

    ``options`` are the keyword arguments the class accepts besides ``params`` (checked when a
    spec is parsed, so a typo is reported before anything runs).
    """

    name: str
    cls: type[torch.optim.Optimizer]
    fixed: Mapping[str, Any]
    description: str

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options of the class (everything but ``params``)."""
        parameters = inspect.signature(self.cls).parameters.values()
        return tuple(
            p.name for p in parameters
            if p.name != "params" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )


def _entry(name: str, cls: type[torch.optim.Optimizer], description: str, **fixed: Any) -> Any:
    return name, OptimizerEntry(name, cls, MappingProxyType(fixed), description)


def _torch_entries() -> list[tuple[str, OptimizerEntry]]:
    entries = []
    for attribute, cls in sorted(vars(torch.optim).items()):
        if (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
                and cls is not torch.optim.Optimizer):
            lines = (cls.__doc__ or "").strip().splitlines()
            description = lines[0].strip() if lines else f"torch.optim.{attribute}"
            entries.append(_entry(f"torch.{attribute.lower()}", cls,
                                  f"torch.optim.{attribute}: {description}"))
    return entries


#: Every optimizer by its lower-case name in the text form (unstuck's first, then torch.optim's).
OPTIMIZERS: Mapping[str, OptimizerEntry] = MappingProxyType(dict([
    _entry("sgd", uo.SGD, "gradient descent: p <- p - lr g"),
    _entry("momentum", uo.SGD, "SGD with heavy-ball momentum 0.9", momentum=0.9),
    _entry("nesterov", uo.SGD, "SGD with Nesterov momentum 0.9", momentum=0.9, nesterov=True),
    _entry("adagrad", uo.Adagrad, "Adagrad: lr / sqrt(sum of squared gradients) per coordinate"),
    _entry("rmsprop", uo.RMSprop, "RMSprop: lr / sqrt(moving average of squared gradients)"),
    _entry("adam", uo.Adam, "Adam: RMSprop + momentum, bias-corrected"),
    _entry("adamw", uo.AdamW, "AdamW: Adam with decoupled weight decay"),
    _entry("radam", uo.RAdam, "RAdam: Adam with the variance of its adaptive lr rectified"),
    _entry("ranger", uo.Ranger, "Ranger: RAdam + Lookahead + gradient centralization"),
    _entry("lars", uo.LARS, "LARS: momentum SGD with a layer-wise trust ratio"),
    _entry("rangerlars", uo.RangerLARS, "RangerLARS: Ranger with a LAMB-style trust ratio"),
    _entry("adagrad_rms", AdagradRMS, "the lecture's Adagrad: lr / root MEAN square of all past "
           "gradients (no built-in decay; blows up after a long flat stretch)"),
    *_torch_entries(),
]))


class OptimizerSpecError(TextFormError):
    """An optimizer spec that does not parse or names an unknown optimizer or option; the
    message shows the text with a caret under the bad token."""


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer by name with keyword options; ``label`` is its canonical text form.

    Example:
        >>> spec = OptimizerSpec("adam", {"betas": (0.9, 0.99)})
        >>> spec.label
        'adam(betas=(0.9, 0.99))'
        >>> parse_optimizer(spec.label) == spec
        True
    """

    name: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"name: {_unknown(self.name)}")
        known = OPTIMIZERS[self.name].options
        for key in self.options:
            if key not in known:
                raise ValueError(f"options: {_unknown_option(self.name, key, known)}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OptimizerSpec):
            return NotImplemented
        return self.name == other.name and dict(self.options) == dict(other.options)

    def __hash__(self) -> int:
        return hash(self.label)

    @property
    def entry(self) -> OptimizerEntry:
        """The registry entry of :attr:`name`."""
        return OPTIMIZERS[self.name]

    @property
    def lr(self) -> float | None:
        """The learning rate the spec gives explicitly (None: the context decides)."""
        value = self.options.get("lr")
        return None if value is None else float(value)

    @property
    def label(self) -> str:
        """The canonical text form: ``name`` or ``name(key=value, ...)``; parses back to self."""
        if not self.options:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    def __str__(self) -> str:
        return self.label

    def with_options(self, **options: Any) -> OptimizerSpec:
        """A copy with ``options`` added or replaced (e.g. ``spec.with_options(lr=0.1)``)."""
        return OptimizerSpec(self.name, {**self.options, **options})

    def build(
        self, params: Iterable[Any], *, default_lr: float | None = None
    ) -> torch.optim.Optimizer:
        """The optimizer over ``params``: the entry's fixed options, then the spec's own.

        The learning rate is the spec's ``lr`` when it gives one, else ``default_lr`` when not
        None, else the class default.

        Raises:
            ValueError: the class rejects an option (message prefixed with the label).
        """
        options = {**self.entry.fixed, **self.options}
        if "lr" not in self.options and default_lr is not None:
            options["lr"] = default_lr
        try:
            return self.entry.cls(params, **options)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.label}: {error}") from error


# -- the text form --------------------------------------------------------------------------------


_CLOSING = {"(": ")", "[": "]"}


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), OPTIMIZERS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown optimizer {name!r}{hint}; known: {', '.join(OPTIMIZERS)}"


def _unknown_option(name: str, key: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown option {key!r} of {name}{hint}; its options: {', '.join(known)}"


class _Parser(Cursor):
    error_type = OptimizerSpecError

    def __init__(self, text: str) -> None:
        super().__init__(text, dotted_names=True)

    def specs(self) -> list[OptimizerSpec]:
        if self.token.kind == "END":
            raise self.error("empty optimizer text; expected e.g. 'sgd(lr=0.01), adam'",
                             self.token)
        specs: list[OptimizerSpec] = []
        seen: set[str] = set()
        while self.token.kind != "END":
            start = self.token
            spec = self.spec()
            if spec.label in seen:
                raise self.error(f"optimizer {spec.label!r} given twice", start)
            seen.add(spec.label)
            specs.append(spec)
            if self.token.kind != "END":
                if not self.at(","):
                    raise self.error(f"expected ',' between optimizers, got "
                                     f"{self.describe(self.token)}", self.token)
                self.advance()
        return specs

    def spec(self) -> OptimizerSpec:
        name = self.token
        if name.kind != "NAME":
            raise self.error(f"expected an optimizer name, got {self.describe(name)}", name)
        self.advance()
        key = name.text.lower()
        if key not in OPTIMIZERS:
            raise self.error(_unknown(name.text), name)
        known = OPTIMIZERS[key].options
        options: dict[str, Any] = {}
        if self.at("("):
            opening = self.advance()
            while not self.at(")"):
                option = self.token
                if option.kind == "END":
                    raise self.error("unbalanced '(': no ')' closes it", opening)
                following = self.tokens[self.index + 1]
                if option.kind != "NAME" or following.text != "=":
                    raise self.error(f"expected an option KEY=VALUE of {key}, got "
                                     f"{self.describe(option)}", option)
                if option.text not in known:
                    raise self.error(_unknown_option(key, option.text, known), option)
                if option.text in options:
                    raise self.error(f"option {option.text!r} of {key} given twice", option)
                self.index += 2
                options[option.text] = self.value()
                if not self.at(")"):
                    if self.token.kind == "END":
                        raise self.error("unbalanced '(': no ')' closes it", opening)
                    if not self.at(","):
                        raise self.error(f"expected ',' between the options of {key}(...), "
                                         f"got {self.describe(self.token)}", self.token)
                    self.advance()
            self.advance()
        return OptimizerSpec(key, options)

    def value(self) -> Any:
        token = self.token
        if token.kind == "NUMBER":
            self.advance()
            return number(token.text)
        if token.kind == "STRING":
            self.advance()
            return token.text[1:-1]
        if token.kind == "NAME" and token.text in CONSTANTS:
            self.advance()
            return CONSTANTS[token.text]
        if self.at("(") or self.at("["):
            opening = self.advance()
            closing = _CLOSING[opening.text]
            items = []
            while not self.at(closing):
                if self.token.kind == "END":
                    raise self.error(f"unbalanced {opening.text!r}: no {closing!r} closes it",
                                     opening)
                items.append(self.value())
                if not self.at(closing):
                    if self.token.kind == "END":
                        raise self.error(f"unbalanced {opening.text!r}: no {closing!r} "
                                         f"closes it", opening)
                    if not self.at(","):
                        raise self.error(f"expected ',' between items, got "
                                         f"{self.describe(self.token)}", self.token)
                    self.advance()
            self.advance()
            return tuple(items)
        raise self.error(
            f"expected a value (number, string, True, False, None, tuple), got "
            f"{self.describe(token)}", token)


def parse_optimizers(text: str) -> list[OptimizerSpec]:
    """The optimizers in ``text``, separated by top-level commas (nothing is evaluated).

    Example:
        >>> [s.label for s in parse_optimizers("sgd(lr=0.01, momentum=0.5), adagrad")]
        ['sgd(lr=0.01, momentum=0.5)', 'adagrad']

    Raises:
        OptimizerSpecError: a ``ValueError`` naming the bad token (unknown optimizer with a
            did-you-mean and the list, unknown or repeated option, bad value, unbalanced
            brackets, the same optimizer twice).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__} {text!r}")
    try:
        return _Parser(text).specs()
    except RecursionError:
        raise OptimizerSpecError("optimizer text nested too deeply", text, 0) from None


def parse_optimizer(text: str) -> OptimizerSpec:
    """The one optimizer in ``text``, e.g. ``"sgd(lr=0.01, momentum=0.5)"``.

    Raises:
        OptimizerSpecError: as :func:`parse_optimizers`, or when ``text`` holds several.
    """
    specs = parse_optimizers(text)
    if len(specs) != 1:
        raise OptimizerSpecError(f"expected one optimizer, got {len(specs)}", text, 0, len(text))
    return specs[0]
