"""How many Hessian-vector products to find lambda_max and lambda_min: our Lanczos against
PyHessian-style power iteration.

Problems:

1. ``quadratic``: ``0.5 x^T A x`` with 2000 parameters, ``A = P diag(eigenvalues) P`` (``P`` a
   random reflection), a bulk in ``[-0.5, 1]`` and outliers ``100, 60, 30`` and ``-20, -8, -4``:
   the exact extremes are ``100`` and ``-20``.
2. ``digits-mlp``: the built-in digits MLP (64-64-10, 4810 parameters, float64) at its seeded
   initialisation, cross-entropy on the 1078 training images. The reference eigenvalues come from
   a long Lanczos run (tol 1e-12, up to 600 steps).

Power iteration follows PyHessian (``pyhessian/hessian.py``, ``eigenvalues``): a normalised
random start, ``v <- H v / ||H v||``, eigenvalue estimate ``v^T H v``, stop when its relative
change ``|new - old| / (|old| + 1e-6)`` is below ``tol = 1e-3`` (PyHessian's default) or after
100 iterations. It converges to the largest-*magnitude* eigenvalue, so lambda_min needs a second
run on the shifted operator ``H - lambda_max I`` (whose largest-magnitude eigenvalue is
``lambda_min - lambda_max`` when ``|lambda_min - lambda_max| > 0``).

Run: ``python benchmarks/hessian_hvps.py``
"""

from __future__ import annotations

import torch
from torch import nn

from unstuck.diagnose.hessian import lanczos
from unstuck.diagnose.krylov import HessianOperator


def power_iteration(
    matvec,
    n: int,
    *,
    shift: float = 0.0,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    stop_at: tuple[float, float] | None = None,
) -> tuple[float, int]:
    """PyHessian's power iteration on ``H - shift I``; returns (eigenvalue of H, HVPs).

    ``stop_at=(truth, rel)`` also stops once the estimate is within ``rel`` of ``truth`` (to
    count the HVPs needed for a given accuracy; the shift-and-invert is the user's job).
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    v = v / v.norm()
    eigenvalue = None
    hvps = 0
    for _ in range(max_iter):
        hv = matvec(v) - shift * v
        hvps += 1
        estimate = float(hv @ v)
        v = hv / hv.norm()
        if stop_at is not None and abs(estimate + shift - stop_at[0]) <= stop_at[1] * abs(
            stop_at[0]
        ):
            eigenvalue = estimate
            break
        if eigenvalue is not None and abs(eigenvalue - estimate) / (abs(eigenvalue) + 1e-6) < tol:
            eigenvalue = estimate
            break
        eigenvalue = estimate
    return eigenvalue + shift, hvps


def quadratic() -> tuple[nn.Module, list[torch.Tensor], float, float]:
    n = 2000
    eigenvalues = torch.cat(
        [
            torch.tensor([100.0, 60.0, 30.0, -20.0, -8.0, -4.0], dtype=torch.float64),
            torch.linspace(-0.5, 1.0, n - 6, dtype=torch.float64),
        ]
    )
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, generator=g, dtype=torch.float64)
    u = u / u.norm()
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        z = x - 2 * u * (u @ x)
        return 0.5 * (eigenvalues * z * z).sum()

    return loss, [x], 100.0, -20.0


def digits() -> tuple[object, list[torch.Tensor], float, float]:
    from unstuck.lab.tasks import digits_mlp

    task = digits_mlp()
    model = task.make_model(0).double().eval()
    x, y = task.train.inputs.double(), task.train.targets
    params = list(model.parameters())

    def loss() -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y)

    reference = lanczos(loss, params, k=1, max_iter=600, tol=1e-12)
    return loss, params, float(reference.top_values[0]), float(reference.bottom_values[0])


def main() -> None:
    rows = []
    for name, build in (("quadratic (n=2000)", quadratic), ("digits-mlp (n=4810)", digits)):
        loss, params, true_max, true_min = build()
        result = lanczos(loss, params, k=1, max_iter=600, tol=1e-6)
        found_max, found_min = float(result.top_values[0]), float(result.bottom_values[0])
        rows.append((name, "lanczos k=1 (ours)", "max+min", result.hvps, found_max, true_max))
        rows.append((name, "", "", "", found_min, true_min))

        op = HessianOperator(loss, params)
        n = op.n
        top, hvps_top = power_iteration(op.matvec, n)
        rows.append((name, "power iteration (PyHessian)", "|lambda|max", hvps_top, top, true_max))
        bottom, hvps_bottom = power_iteration(op.matvec, n, shift=top, seed=1)
        rows.append((name, "  + shifted run", "min", hvps_bottom, bottom, true_min))
        rows.append((name, "  = total", "", hvps_top + hvps_bottom, float("nan"), float("nan")))
        # how many power-iteration HVPs it takes to be within 1e-6 of the truth (tol=0)
        for target, shift, true in (
            ("max, to 1e-6", 0.0, true_max),
            ("min, to 1e-6", true_max, true_min),
        ):
            found, hvps = power_iteration(
                op.matvec, n, shift=shift, tol=0.0, max_iter=2000, stop_at=(true, 1e-6)
            )
            rows.append((name, "power iteration, tol=0", target, hvps, found, true))

    header = (
        f"{'problem':<20} {'method':<28} {'target':<12} {'HVPs':>5} {'found':>14} {'rel err':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, method, target, hvps, found, true in rows:
        err = abs(found - true) / abs(true) if true == true else float("nan")
        found_s = f"{found:14.8g}" if found == found else " " * 14
        err_s = f"{err:9.1e}" if err == err else " " * 9
        print(f"{name:<20} {method:<28} {target:<12} {hvps!s:>5} {found_s} {err_s}")


if __name__ == "__main__":
    main()
