r"""Two-dimensional error surfaces to watch optimizers move on.

A :class:`Surface` is a small frozen value: its function :math:`f(x, y)` written with torch
operations (so it works on scalars for autograd and on whole grids for contour plots), its
analytic gradient, its known minima and saddle points, a view box and a default start point.
:data:`SURFACES` holds the built-in ones by name; :func:`get_surface` also accepts a Python
function of ``(x, y)`` given as ``"module:function"`` (gradient by autograd).

=================  ====================================================  =====================
name               f(x, y)                                               minima
=================  ====================================================  =====================
``valley``         :math:`(x^2 + 100 y^2) / 20`                          (0, 0)
``rosenbrock``     :math:`(1 - x)^2 + 100 (y - x^2)^2`                   (1, 1)
``beale``          :math:`\sum_i (c_i - x + x y^i)^2`, c = 1.5, 2.25,    (3, 0.5)
                   2.625
``himmelblau``     :math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2`            four, f = 0
``saddle``         :math:`x^2 - y^2`                                     none (saddle at 0)
``monkey_saddle``  :math:`x^3 - 3 x y^2`                                 none (saddle at 0)
``rastrigin``      :math:`20 + \sum_{u=x,y} (u^2 - 10 \cos 2\pi u)`      (0, 0)
=================  ====================================================  =====================

Example:
    >>> import torch
    >>> valley = SURFACES["valley"]
    >>> float(valley.value(torch.tensor(-9.0), torch.tensor(1.0)))
    9.05
    >>> [float(g) for g in valley.gradient(torch.tensor(-9.0), torch.tensor(1.0))]
    [-0.9, 10.0]
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import Tensor

__all__ = ["SURFACES", "Surface", "get_surface", "surface_from_function"]

Point = tuple[float, float]
Box = tuple[float, float, float, float]
Function = Callable[[Tensor, Tensor], Tensor]
Gradient = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

DEFAULT_BOX: Box = (-2.0, 2.0, -2.0, 2.0)


@dataclasses.dataclass(frozen=True)
class Surface:
    """A function of two variables with what an optimizer lesson needs to know about it.

    Args:
        name: registry name (or ``module:function``).
        formula: the function in plain text, for titles and ``--list``.
        function: ``f(x, y)`` with torch operations, elementwise over tensors of any shape.
        gradient: ``(df/dx, df/dy)``, elementwise; None: by autograd.
        minima: the known minimizers (global and notable local ones).
        saddles: the known saddle points (other critical points that stall gradient descent).
        box: the view ``(x_min, x_max, y_min, y_max)``.
        start: the default start point, chosen so the lesson of the surface shows.
        bounded: whether f is bounded below (then ``f - min`` is drawn on a log axis).
        note: one sentence: what to watch for on this surface.
    """

    name: str
    formula: str
    function: Function = dataclasses.field(repr=False, compare=False)
    gradient_function: Gradient | None = dataclasses.field(default=None, repr=False,
                                                            compare=False)
    minima: tuple[Point, ...] = ()
    saddles: tuple[Point, ...] = ()
    box: Box = DEFAULT_BOX
    start: Point = (-1.5, 1.5)
    bounded: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        x0, x1, y0, y1 = self.box
        if not (math.isfinite(x0 + x1 + y0 + y1) and x0 < x1 and y0 < y1):
            raise ValueError(f"box must be (x_min, x_max, y_min, y_max) with x_min < x_max "
                             f"and y_min < y_max, got {self.box}")
        if not all(math.isfinite(v) for v in self.start):
            raise ValueError(f"start must be finite, got {self.start}")

    def value(self, x: Tensor, y: Tensor) -> Tensor:
        """``f(x, y)``, elementwise."""
        return self.function(x, y)

    def gradient(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(df/dx, df/dy)`` at ``(x, y)``: the analytic formula, or autograd without one."""
        if self.gradient_function is not None:
            return self.gradient_function(x, y)
        with torch.enable_grad():
            x_ = x.detach().clone().requires_grad_(True)
            y_ = y.detach().clone().requires_grad_(True)
            gx, gy = torch.autograd.grad(self.function(x_, y_).sum(), (x_, y_),
                                         allow_unused=True)
        return (torch.zeros_like(x) if gx is None else gx,
                torch.zeros_like(y) if gy is None else gy)

    def __call__(self, point: Tensor) -> Tensor:
        """``f`` at a point given as a tensor of shape ``(2,)``."""
        return self.function(point[0], point[1])

    def hessian(self, point: Point) -> Tensor:
        """The 2x2 Hessian at ``point`` (float64, by autograd)."""
        return torch.autograd.functional.hessian(
            self, torch.tensor(point, dtype=torch.float64))

    @property
    def minimum_value(self) -> float | None:
        """The smallest value at the known minima (None when there are none)."""
        if not self.minima:
            return None
        return min(float(self(torch.tensor(m, dtype=torch.float64))) for m in self.minima)

    def nearest_minimum(self, point: Point) -> tuple[Point | None, float]:
        """The known minimum closest to ``point`` and the distance to it (None, nan: none)."""
        if not self.minima:
            return None, math.nan
        best = min(self.minima, key=lambda m: math.dist(m, point))
        return best, math.dist(best, point)


# -- the built-in surfaces ------------------------------------------------------------------------


def _valley(x: Tensor, y: Tensor) -> Tensor:
    return (x**2 + 100 * y**2) / 20


def _valley_grad(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return x / 10, 10 * y


def _rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_grad(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return -2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)


_BEALE_C = (1.5, 2.25, 2.625)


def _beale(x: Tensor, y: Tensor) -> Tensor:
    return sum((c - x + x * y ** (i + 1)) ** 2 for i, c in enumerate(_BEALE_C))  # type: ignore[return-value]


def _beale_grad(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    gx = torch.zeros_like(x * y)
    gy = torch.zeros_like(x * y)
    for i, c in enumerate(_BEALE_C):
        k = i + 1
        r = c - x + x * y**k
        gx = gx + 2 * r * (y**k - 1)
        gy = gy + 2 * r * k * x * y ** (k - 1)
    return gx, gy


def _himmelblau(x: Tensor, y: Tensor) -> Tensor:
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def _himmelblau_grad(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    a, b = x**2 + y - 11, x + y**2 - 7
    return 4 * x * a + 2 * b, 2 * a + 4 * y * b


def _saddle(x: Tensor, y: Tensor) -> Tensor:
    return x**2 - y**2


def _saddle_grad(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return 2 * x, -2 * y


def _monkey_saddle(x: Tensor, y: Tensor) -> Tensor:
    return x**3 - 3 * x * y**2


def _monkey_saddle_grad(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return 3 * x**2 - 3 * y**2, -6 * x * y


def _rastrigin(x: Tensor, y: Tensor) -> Tensor:
    tau = 2 * math.pi
    return 20 + x**2 - 10 * torch.cos(tau * x) + y**2 - 10 * torch.cos(tau * y)


def _rastrigin_grad(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    tau = 2 * math.pi
    return 2 * x + 10 * tau * torch.sin(tau * x), 2 * y + 10 * tau * torch.sin(tau * y)


#: Every built-in surface by name.
SURFACES: Mapping[str, Surface] = MappingProxyType({s.name: s for s in (
    Surface(
        "valley", "(x^2 + 100 y^2) / 20", _valley, _valley_grad,
        minima=((0.0, 0.0),), box=(-10.0, 2.0, -1.6, 1.6), start=(-9.0, 1.0),
        note="an elongated quadratic (curvatures 0.1 and 10): with one learning rate for both "
             "directions, gradient descent bounces between the steep walls, its gradient "
             "staying large while the loss stops falling; adaptive methods go straight",
    ),
    Surface(
        "rosenbrock", "(1 - x)^2 + 100 (y - x^2)^2", _rosenbrock, _rosenbrock_grad,
        minima=((1.0, 1.0),), box=(-2.0, 2.0, -1.0, 3.0), start=(-1.5, 2.0),
        note="a curved, flat-bottomed valley: easy to find, slow to follow to (1, 1)",
    ),
    Surface(
        "beale", "(1.5 - x + x y)^2 + (2.25 - x + x y^2)^2 + (2.625 - x + x y^3)^2",
        _beale, _beale_grad, minima=((3.0, 0.5),), saddles=((0.0, 1.0),),
        box=(-4.5, 4.5, -4.5, 4.5), start=(1.0, 1.5),
        note="flat plateaus and sharp ridges: the gradient spans many orders of magnitude",
    ),
    Surface(
        "himmelblau", "(x^2 + y - 11)^2 + (x + y^2 - 7)^2", _himmelblau, _himmelblau_grad,
        minima=((3.0, 2.0), (-2.805118086953, 3.131312518250),
                (-3.779310253378, -3.283185991286), (3.584428340330, -1.848126526964)),
        saddles=((0.086677504555, 2.884254701175), (-3.073025750764, -0.081353044288),
                 (3.385154183607, 0.073851879838), (-0.127961346731, -1.953714980244)),
        box=(-5.0, 5.0, -5.0, 5.0), start=(-0.3, -0.9),
        note="four equal minima; from near the central maximum each optimizer picks one",
    ),
    Surface(
        "saddle", "x^2 - y^2", _saddle, _saddle_grad, saddles=((0.0, 0.0),),
        box=(-2.0, 2.0, -2.0, 2.0), start=(1.5, 1e-3), bounded=False,
        note="started a hair off the ridge, gradient descent slides into the saddle and "
             "stalls where the gradient vanishes; momentum or gradient noise escapes",
    ),
    Surface(
        "monkey_saddle", "x^3 - 3 x y^2", _monkey_saddle, _monkey_saddle_grad,
        saddles=((0.0, 0.0),), box=(-2.0, 2.0, -2.0, 2.0), start=(1.5, 0.05), bounded=False,
        note="a degenerate saddle (zero Hessian): the gradient vanishes quadratically, so "
             "gradient descent crawls",
    ),
    Surface(
        "rastrigin", "20 + x^2 - 10 cos(2 pi x) + y^2 - 10 cos(2 pi y)", _rastrigin,
        _rastrigin_grad, minima=((0.0, 0.0),), box=(-5.12, 5.12, -5.12, 5.12),
        start=(-3.2, 2.8),
        note="a lattice of local minima: local methods stop in the nearest one",
    ),
)})


def surface_from_function(
    text: str, *, box: Box | None = None, start: Point | None = None
) -> Surface:
    """The surface of a Python function ``f(x, y)`` named ``"module:function"``.

    The function must take two tensors and return a tensor, using torch operations (its
    gradient is taken by autograd). The module is imported by its name, so it must be on
    ``sys.path`` (the current directory is, for the command line). Minima are unknown.

    Example::

        # mysurfaces.py
        def bowl(x, y):
            return x**2 + 3 * y**2

        surface = surface_from_function("mysurfaces:bowl", box=(-3, 3, -3, 3))

    Raises:
        ValueError: ``text`` is not ``module:function``, the module or the function cannot be
            found, or the function does not return a finite scalar tensor at the start point.
    """
    module_name, sep, function_name = text.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"surface must be a name ({', '.join(SURFACES)}) or "
                         f"'module:function', got {text!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"surface {text!r}: cannot import module {module_name!r}: "
                         f"{error}") from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"surface {text!r}: module {module_name!r} has no function "
                         f"{function_name!r}")
    box = DEFAULT_BOX if box is None else tuple(float(v) for v in box)  # type: ignore[assignment]
    if start is None:
        x0, x1, y0, y1 = box  # type: ignore[misc]
        start = (x0 + 0.125 * (x1 - x0), y0 + 0.875 * (y1 - y0))
    surface = Surface(text, f"{function_name}(x, y)", function, box=box,  # type: ignore[arg-type]
                      start=start, bounded=False)
    try:
        probe = surface(torch.tensor(surface.start, dtype=torch.float64))
    except Exception as error:  # the user's code: report whatever it raises
        raise ValueError(f"surface {text!r}: calling {function_name}(x, y) at "
                         f"{surface.start} failed: {error}") from error
    if not isinstance(probe, Tensor) or probe.numel() != 1:
        raise ValueError(f"surface {text!r}: {function_name}(x, y) must return a scalar "
                         f"tensor for scalar tensors x, y, got {probe!r}")
    return surface


def get_surface(text: str, *, box: Box | None = None, start: Point | None = None) -> Surface:
    """A built-in surface by name, or a user function as ``"module:function"``.

    ``box`` and ``start`` replace the surface's view box and default start point.

    Raises:
        ValueError: unknown name (with a did-you-mean and the list), or a bad function.
    """
    if ":" in text:
        return surface_from_function(text, box=box, start=start)
    surface = SURFACES.get(text)
    if surface is None:
        import difflib

        close = difflib.get_close_matches(text, SURFACES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown surface {text!r}{hint}; known: {', '.join(SURFACES)}, "
                         f"or module:function")
    changes: dict[str, object] = {}
    if box is not None:
        changes["box"] = tuple(float(v) for v in box)
    if start is not None:
        changes["start"] = tuple(float(v) for v in start)
    return dataclasses.replace(surface, **changes) if changes else surface
