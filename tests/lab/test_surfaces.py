"""Error surfaces: analytic gradients match autograd, known minima are minima, saddles are
saddles, user functions work, the registry and lookups name what is wrong."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unstuck.lab.surfaces import SURFACES, get_surface, surface_from_function


@pytest.mark.parametrize("name", list(SURFACES))
def test_gradient_matches_autograd_at_random_points(name: str) -> None:
    surface = SURFACES[name]
    x0, x1, y0, y1 = surface.box
    generator = torch.Generator().manual_seed(0)
    u = torch.rand(2, 64, generator=generator, dtype=torch.float64)
    x = (x0 + (x1 - x0) * u[0]).requires_grad_(True)
    y = (y0 + (y1 - y0) * u[1]).requires_grad_(True)
    gx, gy = torch.autograd.grad(surface.value(x, y).sum(), (x, y))
    ax, ay = surface.gradient(x.detach(), y.detach())
    torch.testing.assert_close(ax, gx, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(ay, gy, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize(("name", "point"), [
    (name, point) for name, s in SURFACES.items() for point in s.minima])
def test_known_minima_have_zero_gradient_and_psd_hessian(name: str, point: tuple) -> None:
    surface = SURFACES[name]
    gx, gy = surface.gradient(*torch.tensor(point, dtype=torch.float64))
    assert abs(float(gx)) < 1e-9 and abs(float(gy)) < 1e-9
    eigenvalues = torch.linalg.eigvalsh(surface.hessian(point))
    assert (eigenvalues > 0).all(), eigenvalues
    assert surface.minimum_value == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("name", "point"), [
    (name, point) for name, s in SURFACES.items() for point in s.saddles])
def test_known_saddles_have_zero_gradient_and_no_definite_hessian(name: str,
                                                                  point: tuple) -> None:
    surface = SURFACES[name]
    gx, gy = surface.gradient(*torch.tensor(point, dtype=torch.float64))
    assert abs(float(gx)) < 1e-9 and abs(float(gy)) < 1e-9
    low, high = torch.linalg.eigvalsh(surface.hessian(point)).tolist()
    assert low <= 1e-12 and high >= -1e-12  # indefinite, or degenerate (monkey saddle)
    assert low < -1e-6 or abs(low) < 1e-12 and abs(high) < 1e-12


def test_every_surface_documents_itself() -> None:
    for surface in SURFACES.values():
        x0, x1, y0, y1 = surface.box
        assert surface.formula and surface.note
        assert x0 <= surface.start[0] <= x1 and y0 <= surface.start[1] <= y1
        assert all(x0 <= m[0] <= x1 and y0 <= m[1] <= y1 for m in surface.minima)


def test_value_works_on_grids() -> None:
    xs = torch.linspace(-1, 1, 5, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(xs, xs, indexing="ij")
    for surface in SURFACES.values():
        assert surface.value(grid_x, grid_y).shape == (5, 5)


def test_nearest_minimum() -> None:
    himmelblau = SURFACES["himmelblau"]
    minimum, distance = himmelblau.nearest_minimum((3.1, 2.0))
    assert minimum == (3.0, 2.0) and distance == pytest.approx(0.1)
    assert SURFACES["saddle"].nearest_minimum((0.0, 0.0))[0] is None


@pytest.fixture()
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_bowls.py").write_text(textwrap.dedent("""
        import torch

        def bowl(x, y):
            return (x - 1) ** 2 + 3 * (y + 0.5) ** 2 + 0.1 * torch.sin(x)

        NOT_A_FUNCTION = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_bowls"
    sys.modules.pop("my_bowls", None)


def test_user_function_module_colon_function(user_module: str) -> None:
    surface = get_surface(f"{user_module}:bowl", box=(-3, 3, -3, 3), start=(2.0, 2.0))
    assert surface.box == (-3.0, 3.0, -3.0, 3.0) and surface.start == (2.0, 2.0)
    x, y = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.2, dtype=torch.float64)
    gx, gy = surface.gradient(x, y)
    assert float(gx) == pytest.approx(2 * (0.3 - 1) + 0.1 * torch.cos(x).item())
    assert float(gy) == pytest.approx(6 * (-0.2 + 0.5))
    default = surface_from_function(f"{user_module}:bowl")
    assert default.box == (-2.0, 2.0, -2.0, 2.0) and default.start == (-1.5, 1.5)


@pytest.mark.parametrize(("text", "message"), [
    ("vally", "did you mean 'valley'"),
    ("no_such_module_xyz:f", "cannot import module"),
    ("my_bowls:missing", "has no function 'missing'"),
    ("my_bowls:NOT_A_FUNCTION", "has no function"),
    (":f", "module:function"),
])
def test_bad_surfaces_are_named(user_module: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_surface(text)


def test_bad_box_is_rejected() -> None:
    with pytest.raises(ValueError, match="box must be"):
        get_surface("valley", box=(1, 0, 0, 1))
