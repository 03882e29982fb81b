"""Portable randomness helpers.

Everything the generator draws goes through these helpers so that the output is
byte-identical on every machine and Python build:

* each stream is a :class:`random.Random` seeded from a SHA-256 digest of
  ``(seed, stream name, index)`` -- no ``hash()``, no process-dependent state;
* only ``random()``, ``randrange()`` and integer/float arithmetic are used.
  ``+ - * /`` and ``ldexp`` are exactly specified by IEEE 754, whereas
  ``math.exp``/``math.log`` come from the platform's libm and may differ in the
  last bit between systems.  So normal variates are built from a sum of twelve
  uniforms (Irwin-Hall) and ``exp`` is a fixed polynomial evaluation.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

_LN2 = 0.6931471805599453
_INV_LN2 = 1.4426950408889634
# Taylor coefficients 1/k! for k = 16..0 (Horner order); 1.0 / int is exactly rounded.
_EXP_COEFFS = tuple(1.0 / math.factorial(k) for k in range(16, -1, -1))


def rng_for(seed: int, stream: str, index: int = 0) -> random.Random:
    """Independent, reproducible random stream for ``(seed, stream, index)``."""
    digest = hashlib.sha256(f"{seed}/{stream}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def exp(x: float) -> float:
    """``e**x`` using only exactly-specified float operations (rel. error ~1e-15)."""
    k = math.floor(x * _INV_LN2 + 0.5)
    r = x - k * _LN2  # |r| <= ~0.35
    p = 0.0
    for c in _EXP_COEFFS:
        p = p * r + c
    return math.ldexp(p, k)


def normal(rng: random.Random) -> float:
    """Approximately standard normal (Irwin-Hall, 12 uniforms; support +-6)."""
    r = rng.random
    return r() + r() + r() + r() + r() + r() + r() + r() + r() + r() + r() + r() - 6.0


def lognormal(rng: random.Random, mu: float, sigma: float) -> float:
    return exp(mu + sigma * normal(rng))


def stochastic_round(x: float, rng: random.Random) -> int:
    """``floor(x)`` or ``floor(x) + 1`` with the expectation equal to ``x``."""
    return int(x + rng.random())


class Weighted:
    """Weighted choice over a fixed list of values (like ``random.choices``)."""

    __slots__ = ("values", "cum", "total", "hi")

    def __init__(self, values: Sequence, weights: Sequence[float]) -> None:
        if len(values) != len(weights) or not values:
            raise ValueError("values and weights must be non-empty and of equal length")
        self.values = list(values)
        self.cum = list(accumulate(float(w) for w in weights))
        self.total = self.cum[-1]
        self.hi = len(self.cum) - 1

    def index(self, rng: random.Random) -> int:
        return bisect_right(self.cum, rng.random() * self.total, 0, self.hi)

    def pick(self, rng: random.Random):
        return self.values[bisect_right(self.cum, rng.random() * self.total, 0, self.hi)]


def weighted(pairs: Sequence[tuple[object, float]]) -> Weighted:
    return Weighted([v for v, _ in pairs], [w for _, w in pairs])
