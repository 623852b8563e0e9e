"""Published top-1 accuracies (%) for the class-imbalanced SSL benchmarks.

The numbers are transcribed from ``/work/shared/docs/PROTOCOL.md`` (see
``tests/test_report.py``, which checks them against that file).  They are
data only: nothing here is a result of this repository.

Keys are ``(method, setting)`` where

* ``method`` uses this package's method naming (``"fixmatch"``,
  ``"fixmatch+abc"``, ...; lowercase, no spaces) and
* ``setting`` is USB's ``save_name`` convention without the seed suffix,
  ``f"{dataset}_lb{N1}_{gamma_l}_ulb{M1}_{gamma_u}"``, e.g.
  ``"cifar10_lb1500_100_ulb3000_-100"`` (reversed: ``gamma_u = -gamma_l``,
  uniform: ``gamma_u = 1``, consistent: ``gamma_u = gamma_l``).

All published numbers are for WRN-28-2 (``PUBLISHED_NET``).  Values are the
mean over 3 seeds as reported by the source; the source string says where the
number comes from and whether its training protocol differs from USB's.

SeMi's paper gives no per-setting numbers, so there is no ``fixmatch+semi``
entry.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

from .naming import make_setting, normalise_method  # noqa: F401  (make_setting re-exported)

__all__ = [
    "PUBLISHED",
    "PUBLISHED_NET",
    "PublishedEntry",
    "USB_TABLE_COLUMNS",
    "lookup",
    "make_setting",
]

#: Backbone every published number below was obtained with.
PUBLISHED_NET = "wrn_28_2"


class PublishedEntry(NamedTuple):
    """One published top-1 accuracy (in %) and where it comes from."""

    value: float
    source: str


_USB_SOURCE = ("USB results/classic_cv_imb.csv (USB's own table, WRN-28-2, "
               "mean of 3 seeds)")
_ACR_SOURCE = ("ACR paper (Wei & Gan, CVPR 2023), its own protocol "
               "(2 strong views, cosine lr), not USB's")

#: Column order of USB's table in PROTOCOL.md, as settings.
USB_TABLE_COLUMNS: Tuple[str, ...] = (
    "cifar10_lb1500_100_ulb3000_100",
    "cifar10_lb1500_100_ulb3000_-100",
    "cifar10_lb1500_150_ulb3000_150",
    "cifar10_lb500_100_ulb4000_100",
    "cifar10_lb500_100_ulb4000_-100",
    "cifar10_lb500_150_ulb4000_150",
    "cifar100_lb150_10_ulb300_10",
    "cifar100_lb150_10_ulb300_-10",
    "cifar100_lb150_15_ulb300_15",
)

_USB_ROWS: Dict[str, Tuple[float, ...]] = {
    "supervised": (63.83, 63.89, 59.79, 46.63, 47.02, 43.39, 48.26, 48.33, 45.69),
    "fixmatch": (76.69, 69.95, 73.01, 72.41, 62.10, 65.37, 57.76, 57.56, 54.29),
    "fixmatch+daso": (76.51, 78.07, 71.97, 68.62, 69.16, 64.40, 59.01, 60.06, 55.75),
    "fixmatch+abc": (83.88, 83.78, 81.73, 82.02, 80.13, 77.15, 59.71, 60.22, 56.77),
    "fixmatch+cossl": (85.28, 75.48, 82.98, 82.22, 70.91, 78.15, 59.03, 58.54, 56.58),
}

_ACR_ROWS: Dict[str, float] = {
    "cifar10_lb1500_100_ulb3000_100": 84.1,
    "cifar10_lb1500_100_ulb3000_1": 93.5,
    "cifar10_lb1500_100_ulb3000_-100": 89.5,
    "cifar10_lb500_100_ulb4000_100": 81.6,
    "cifar10_lb500_100_ulb4000_1": 92.1,
    "cifar10_lb500_100_ulb4000_-100": 85.0,
    "cifar100_lb150_10_ulb300_10": 61.0,
    "cifar100_lb150_10_ulb300_1": 65.8,
    "cifar100_lb150_10_ulb300_-10": 63.3,
}

#: ACR re-run inside USB by others (N1=1500, best acc, seeds 0-2); mentioned
#: in the ACR source string for the matching settings, not used as the value.
_ACR_USB_RERUN: Dict[str, Tuple[float, float, float]] = {
    "cifar10_lb1500_100_ulb3000_100": (84.8, 84.2, 83.8),
    "cifar10_lb1500_100_ulb3000_-100": (86.1, 86.5, 86.3),
}


def _build() -> Dict[Tuple[str, str], PublishedEntry]:
    table: Dict[Tuple[str, str], PublishedEntry] = {}
    for method, values in _USB_ROWS.items():
        assert len(values) == len(USB_TABLE_COLUMNS)
        for setting, value in zip(USB_TABLE_COLUMNS, values):
            table[(method, setting)] = PublishedEntry(value, _USB_SOURCE)
    for setting, value in _ACR_ROWS.items():
        source = _ACR_SOURCE
        rerun = _ACR_USB_RERUN.get(setting)
        if rerun is not None:
            source += ("; a re-run inside USB by others gave "
                       + "/".join(f"{v:.1f}" for v in rerun)
                       + " (best acc, seeds 0-2)")
        table[("fixmatch+acr", setting)] = PublishedEntry(value, source)
    return dict(sorted(table.items()))


#: ``{(method, setting): PublishedEntry(value_percent, source)}``.
PUBLISHED: Dict[Tuple[str, str], PublishedEntry] = _build()


def lookup(method: str, setting: str, net: Optional[str] = PUBLISHED_NET
           ) -> Optional[PublishedEntry]:
    """Return the published entry for ``(method, setting)`` or ``None``.

    ``method`` is normalised (lowercase, spaces removed).  When ``net`` is
    given and differs from :data:`PUBLISHED_NET` there is no match, since
    every published number is for WRN-28-2.
    """
    if net is not None and net != PUBLISHED_NET:
        return None
    key = (normalise_method(method), setting)
    return PUBLISHED.get(key)
