"""Argument types of the algorithms' ``SSL_Argument`` lists (no semilearn import).

A key is declared once, in its algorithm's ``get_argument``, with its type, default, help
and range. The types here check what they parse, so that the configuration
(``semi_usb.config``) and USB's own ``argparse`` both refuse a bad value in one line:

* :func:`one_of`: one of a few named values (``acr_class_vector``, ``semi_plce_weights``);
* :func:`at_least`: a number ``>= n`` (sizes, counts, loss weights);
* :func:`in_unit_interval`: a number in ``[0, 1]`` (probabilities, thresholds, momenta);
* :func:`positive`: a number ``> 0`` (temperatures, rates).

A refused value raises :class:`RangeError`, a ``ValueError`` that ``argparse`` reports with
its own message (``argument --semi_bank_size: must be >= 1, got 0``). A range type keeps its
base type's name (``int``, ``float``) and carries ``base`` and ``range``.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable, Optional


class RangeError(argparse.ArgumentTypeError, ValueError):
    """A value of the right type outside its declared range: ``must be >= 1, got 0``."""


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (``<`` where open; ``None``: unbounded), and finite: a key
    with a range means a number, so ``inf``, ``nan`` and floats beyond float32 are outside
    every range."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        if isinstance(v, float) and not is_finite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def describe(self) -> str:
        if self.lo is None and self.hi is None:
            return "a number"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"in {left}{_num(self.lo)}, {_num(self.hi)}{right}"


# Training computes in float32 (or narrower): a float above its largest value is as infinite
# as inf (torch's SGD: "value cannot be converted to type float without overflow").
FLOAT32_MAX = 3.4028234663852886e38


def is_finite(v: float) -> bool:
    """``v`` is a number float32 can hold (not NaN, not +-inf, not beyond +-3.4e38)."""
    return math.isfinite(v) and abs(v) <= FLOAT32_MAX


def _num(x: float) -> str:
    """A bound as written: ``4294967295``, ``0.5``."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def within(base: Callable, rng: Range) -> Callable:
    """The type ``base`` restricted to ``rng``."""

    def parse(v):
        x = base(v)
        if not rng.contains(x):
            finite = "" if is_finite(x) else "finite (float32: at most 3.4e38) and "
            raise RangeError(f"must be {finite}{rng.describe()}, got {x}")
        return x

    parse.__name__ = base.__name__
    parse.base, parse.range = base, rng
    return parse


def at_least(n: float, base: Callable = int) -> Callable:
    """A number ``>= n`` (``int`` unless ``base`` says otherwise)."""
    return within(base, Range(n))


def in_unit_interval() -> Callable:
    """A float in ``[0, 1]``."""
    return within(float, Range(0, 1))


def positive(base: Callable = float) -> Callable:
    """A number ``> 0``."""
    return within(base, Range(0, lo_open=True))


def one_of(*values: str) -> Callable[[str], str]:
    """The type of a key with the values ``values``: returns the value, refuses any other."""

    def parse(v) -> str:
        if not isinstance(v, str) or v not in values:
            raise ValueError(f"expected one of {', '.join(values)}, got {v!r}")
        return v

    parse.__name__ = "one of " + ", ".join(values)
    return parse
