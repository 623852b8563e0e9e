"""Argument types shared by the algorithms' ``SSL_Argument`` lists (no semilearn import).

:func:`one_of`: a key that takes one of a few named values (``acr_class_vector``,
``semi_plce_weights``). A wrong value is a ``ValueError`` of the type, so that the
configuration (``semi_usb.config``) and USB's own ``argparse`` both refuse it in one line.
"""
from __future__ import annotations

from typing import Callable


def one_of(*values: str) -> Callable[[str], str]:
    """The type of a key with the values ``values``: returns the value, refuses any other."""

    def parse(v) -> str:
        if not isinstance(v, str) or v not in values:
            raise ValueError(f"expected one of {', '.join(values)}, got {v!r}")
        return v

    parse.__name__ = "one of " + ", ".join(values)
    return parse
