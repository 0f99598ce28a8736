"""Plain-loop reference implementations of the definitions in DESIGN.md (fp64, one row at a time).

They share no code with ``mmgeom.functional``: each is written straight from the equation.
"""

from __future__ import annotations

import math

from torch import Tensor


def unit(v: Tensor) -> Tensor:
    return v / math.sqrt(float((v * v).sum()))


def info_nce_loop(za: Tensor, zb: Tensor, tau: float, labels: Tensor | None = None) -> float:
    n = za.shape[0]
    a = [unit(za[i].double()) for i in range(n)]
    b = [unit(zb[i].double()) for i in range(n)]
    s = [[float(a[i] @ b[j]) / tau for j in range(n)] for i in range(n)]

    def ce(mat: list[list[float]]) -> float:
        total = 0.0
        for i in range(n):
            lse = math.log(sum(math.exp(x) for x in mat[i]))
            if labels is None:
                total += lse - mat[i][i]
            else:
                pos = [j for j in range(n) if int(labels[j]) == int(labels[i])]
                total += sum(lse - mat[i][j] for j in pos) / len(pos)
        return total / n

    st = [[s[j][i] for j in range(n)] for i in range(n)]
    return 0.5 * (ce(s) + ce(st))


def siglip_loop(za: Tensor, zb: Tensor, t_prime: float, bias: float) -> float:
    n = za.shape[0]
    t = math.exp(t_prime)
    total = 0.0
    for i in range(n):
        for j in range(n):
            y = 1.0 if i == j else -1.0
            x = y * (t * float(unit(za[i].double()) @ unit(zb[j].double())) + bias)
            total += -math.log(1.0 / (1.0 + math.exp(-x)))
    return total / n


def alignment_loop(za: Tensor, zb: Tensor, alpha: float) -> float:
    n = za.shape[0]
    return sum(float((unit(za[i].double()) - unit(zb[i].double())).norm()) ** alpha for i in range(n)) / n


def uniformity_loop(z: Tensor, t: float) -> float:
    n = z.shape[0]
    vals = []
    for i in range(n):
        for j in range(i + 1, n):
            d2 = float(((unit(z[i].double()) - unit(z[j].double())) ** 2).sum())
            vals.append(math.exp(-t * d2))
    return math.log(sum(vals) / len(vals))


def dispersion_loop(z: Tensor, tau: float) -> float:
    n = z.shape[0]
    vals = []
    for i in range(n):
        for j in range(n):
            if i != j:
                d2 = float(((unit(z[i].double()) - unit(z[j].double())) ** 2).sum())
                vals.append(math.exp(-d2 / tau))
    return math.log(sum(vals) / len(vals))


def band_hinge_loop(za: Tensor, zb: Tensor, delta: float) -> float:
    n = za.shape[0]
    total = 0.0
    for i in range(n):
        d2 = float(((unit(za[i].double()) - unit(zb[i].double())) ** 2).sum())
        total += max(d2 - delta, 0.0)
    return total / n


def det_loop(g: list[list[float]]) -> float:
    """Determinant by Laplace expansion along the first row (fine for k <= 6)."""
    k = len(g)
    if k == 1:
        return g[0][0]
    total = 0.0
    for c in range(k):
        minor = [row[:c] + row[c + 1 :] for row in g[1:]]
        total += (-1) ** c * g[0][c] * det_loop(minor)
    return total


def gram_det_loop(vectors: list[Tensor]) -> float:
    vs = [unit(v.double()) for v in vectors]
    return det_loop([[float(u @ w) for w in vs] for u in vs])


def tn_loop(u: Tensor, v: Tensor) -> list[float]:
    out = []
    for i in range(u.shape[0]):
        num = math.sqrt(float(((u[i].double() - v[i].double()) ** 2).sum()))
        den = math.sqrt(float((u[i].double() ** 2).sum())) + math.sqrt(float((v[i].double() ** 2).sum()))
        out.append(num / den)
    return out
