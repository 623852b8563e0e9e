"""Published top-1 accuracies (%) for the class-imbalanced SSL benchmarks: data only, nothing
here is a result of this repository.

Every entry (:class:`PublishedEntry`) says

* ``statistic``: ``best`` (the highest test accuracy seen during training, as USB's table and
  USB-based logs report it) or ``last`` (the accuracy at, or averaged over, the end of training);
* ``protocol``: ``usb`` (USB's ``classic_cv_imb``: one strong view, ``uratio`` 2, USB's
  schedule, 262,144 iterations), ``acr`` (the ACR / SeMi authors' protocol: two strong views,
  cosine schedule, labeled images in the unlabeled set, 500 x 500 iterations), ``simpro``
  (SimPro's authors': two strong views, ``uratio`` 8, cosine learning rate 0.17, labeled
  images kept out of the unlabeled set, 43,000 iterations) or another named one;
* ``network``: the backbone (``wrn_28_2``, ...);
* ``source``: the paper and table, or the repository and file, the number was read from;
* ``per_seed``: the per-seed values where the source gives them (``value`` is their mean);
* ``note``: what a reader must know besides (runs stopped early, a statistic read from code).

Keys of :data:`PUBLISHED` are ``(method, setting)``: ``method`` in this package's naming
(``"fixmatch"``, ``"fixmatch+abc"``; lowercase, no spaces), ``setting`` USB's ``save_name``
without the seed (``"cifar10_lb1500_100_ulb3000_-100"``; reversed: ``gamma_u = -gamma_l``,
uniform: ``gamma_u = 1``, consistent: ``gamma_u = gamma_l``; STL-10 with its own unlabeled set:
``"stl10_lb150_10_ulbNone_1"``). One key may hold several entries (one method published under
two protocols). :func:`lookup` picks one.

Left out, with the reason:

* the ACR paper's CIFAR-100-LT numbers were measured with WRN-28-8 (its author says so in
  ``Gank0078/ACR`` issue #5; ``train.py`` set ``model_width = 8`` for CIFAR-100 until May
  2023): they are not WRN-28-2 numbers. The CIFAR-100-LT WRN-28-2 numbers of ACR below are
  the ones CCL (NeurIPS 2024) reports for it;
* CPE's paper (AAAI 2024, Tables 2-3) could not be read where this table was built; ACR and
  CPE in USB's protocol come from CPE's released logs only (its CIFAR-10-LT runs; the fork
  has no CIFAR-100-LT or STL-10-LT logs);
* SeMi's paper gives no per-setting numbers: no ``fixmatch+semi`` entry;
* CDMAD's paper (CVPR 2024) tables could not be read where this table was built, and its
  repository (``LeeHyuck/CDMAD``) holds no logs: no ``fixmatch+cdmad`` entry;
* BaCon's paper (AAAI 2024) could not be read where its entry would have been built, and its
  authors' release (``fqhank/AAAI24-BaCon-CISSL``) has no logs: no ``fixmatch+bacon`` entry.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from .naming import SETTING_RE, make_setting, normalise_method
from .ulb_distribution import suffix as ulb_suffix

__all__ = [
    "PROTOCOLS",
    "PUBLISHED",
    "PUBLISHED_NET",
    "PublishedEntry",
    "STATISTICS",
    "USB_TABLE_COLUMNS",
    "candidates",
    "canonical_setting",
    "lookup",
]

#: Backbone of USB's table and of most entries below.
PUBLISHED_NET = "wrn_28_2"
#: What a published number is: the best test accuracy seen, or the one at the end.
STATISTICS = ("best", "last")
#: Protocols with a name here (docs/protocols.md); an entry may name another one.
PROTOCOLS = ("usb", "acr", "simpro")


class PublishedEntry(NamedTuple):
    """One published top-1 accuracy (in %) with its statistic, protocol, network and source."""

    value: float
    source: str
    statistic: str = "best"
    protocol: str = "usb"
    network: str = PUBLISHED_NET
    per_seed: Tuple[float, ...] = ()
    note: str = ""


_Table = Dict[Tuple[str, str], List[PublishedEntry]]
_ENTRIES: _Table = {}


def _add(method: str, values: Mapping[str, float], *, statistic: str, protocol: str,
         network: str, source: str, per_seed: Optional[Mapping[str, Tuple[float, ...]]] = None,
         note: str = "") -> None:
    """Add one source's numbers for ``method``: ``{setting: value}``."""
    for setting, value in values.items():
        seeds = tuple((per_seed or {}).get(setting, ()))
        entry = PublishedEntry(float(value), source, statistic, protocol, network, seeds, note)
        _ENTRIES.setdefault((normalise_method(method), canonical_setting(setting)), []).append(entry)


def canonical_setting(setting: str) -> str:
    """A setting as :func:`make_setting` writes it (``..._ulbNone_1.0`` -> ``..._ulbNone_1``);
    a name that is not a setting is returned as it is."""
    m = SETTING_RE.match(setting)
    if not m:
        return setting
    try:
        return make_setting(m["dataset"], int(m["nl"]), float(m["gl"]),
                            None if m["nu"] == "None" else int(m["nu"]), float(m["gu"])) + ulb_suffix(m["dist"])
    except ValueError:
        return setting


# --- USB's own table -----------------------------------------------------------------------

#: Column order of USB's ``results/classic_cv_imb.csv``, as settings.
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
#: The STL-10-LT columns of the same file (the official 100,000 unlabeled images).
USB_STL_COLUMNS: Tuple[str, ...] = ("stl10_lb150_10_ulbNone_1", "stl10_lb150_20_ulbNone_1")

USB_SOURCE = ("microsoft/Semi-supervised-learning results/classic_cv_imb.csv (USB's table; "
              "its results/README.md: \"We report the best error rate\"), mean of 3 seeds")

#: USB's rows (its names ``fixmatch_abc`` etc. as labels); ``None`` is a cell USB left empty.
#: The CREST+ rows are left out (no separate method here).
_USB_ROWS: Dict[str, Tuple[Optional[float], ...]] = {
    "supervised": (63.83, 63.89, 59.79, 46.63, 47.02, 43.39, 48.26, 48.33, 45.69, 46.45, 40.8),
    "fixmatch": (76.69, 69.95, 73.01, 72.41, 62.1, 65.37, 57.76, 57.56, 54.29, 67.7, 56.9),
    "fixmatch+crest": (77.19, 80.8, 73.47, 74.21, 68.83, 67.0, 57.92, 58.27, 53.48, 66.28, 62.24),
    "fixmatch+darp": (78.49, 69.67, 74.73, 74.67, 63.26, 68.97, 58.22, 58.08, 54.89, 64.56, 56.95),
    "fixmatch+abc": (83.88, 83.78, 81.73, 82.02, 80.13, 77.15, 59.71, 60.22, 56.77, 72.2, 67.68),
    "fixmatch+daso": (76.51, 78.07, 71.97, 68.62, 69.16, 64.4, 59.01, 60.06, 55.75, 71.13, 62.12),
    "fixmatch+saw": (80.78, 75.37, 76.75, 77.73, 71.16, 70.87, 58.62, 58.99, 55.52, 70.45, 66.42),
    "fixmatch+adsh": (77.67, 70.18, 73.54, 75.87, 65.29, 67.97, 58.37, 55.78, 54.5, 70.58, 66.75),
    "fixmatch+debiaspl": (77.51, 69.72, 73.41, 73.49, 63.62, 67.03, 58.01, 58.38, 54.54, 64.72,
                          56.23),
    "fixmatch+cossl": (85.28, 75.48, 82.98, 82.22, 70.91, 78.15, 59.03, 58.54, 56.58, 71.2, 66.49),
    "remixmatch": (78.79, 68.84, 74.64, 74.8, 52.87, 69.27, 61.77, 53.88, 57.53, 64.58, 54.85),
    "remixmatch+crest": (78.59, 79.45, 49.47, 75.93, 55.06, 69.17, 60.98, 54.34, 56.85, 65.38,
                         57.68),
    "remixmatch+darp": (79.2, 70.03, 74.75, 74.09, 53.6, 69.01, 61.88, 54.12, 57.81, 64.89, 55.14),
    "remixmatch+abc": (84.38, 77.21, 81.46, 80.79, 57.4, 76.25, 63.05, 59.82, 59.66, 67.63, 58.66),
    "remixmatch+daso": (78.94, 69.99, 74.83, 74.11, 53.49, 68.42, 61.89, 54.94, 58.14, 64.95,
                        55.99),
    "remixmatch+saw": (81.32, 58.72, 71.36, 65.99, 56.5, 52.19, 27.88, 11.25, 30.41, 66.63, 56.38),
    "remixmatch+debiaspl": (78.76, 69.94, 75.06, 74.28, 53.37, 68.39, 61.9, 54.32, 57.99, 64.28,
                            55.19),
    "remixmatch+cossl": (86.41, 81.63, 84.04, 83.95, 68.53, 81.01, 63.41, 58.41, None, 69.25,
                         64.17),
}

for _method, _row in _USB_ROWS.items():
    assert len(_row) == len(USB_TABLE_COLUMNS + USB_STL_COLUMNS), _method
    _add(_method, {s: v for s, v in zip(USB_TABLE_COLUMNS + USB_STL_COLUMNS, _row) if v is not None},
         statistic="best", protocol="usb", network="wrn_28_2", source=USB_SOURCE)

# --- ACR --------------------------------------------------------------------------------------

_ACR_NOTE = ("ACR's released train.py logs the best top-1 of the balanced head (and the mean of "
             "the last 20 evaluations); recorded as best")
_add("fixmatch+acr", {
    "cifar10_lb1500_100_ulb3000_100": 84.1,
    "cifar10_lb1500_100_ulb3000_1": 93.5,
    "cifar10_lb1500_100_ulb3000_-100": 89.5,
    "cifar10_lb500_100_ulb4000_100": 81.6,
    "cifar10_lb500_100_ulb4000_1": 92.1,
    "cifar10_lb500_100_ulb4000_-100": 85.0,
}, statistic="best", protocol="acr", network="wrn_28_2",
    source="ACR paper (Wei & Gan, CVPR 2023), CIFAR-10-LT: Table 1 (consistent), Table 2 "
           "(uniform, reversed)", note=_ACR_NOTE)
_add("fixmatch+acr", {
    "cifar100_lb150_10_ulb300_10": 61.0,
    "cifar100_lb150_10_ulb300_1": 65.8,
    "cifar100_lb150_10_ulb300_-10": 63.3,
}, statistic="best", protocol="acr", network="wrn_28_2",
    source="CCL paper (Zhou et al., NeurIPS 2024), Tables 2 and 4, ACR row (WRN-28-2; the ACR "
           "paper's own CIFAR-100-LT numbers are WRN-28-8)",
    note="CCL's released train.py (zhouzihao11/CCL, built on ACR's) logs the same two; recorded as best")

#: ACR re-run inside USB by CPE's authors: ``BEST_EVAL_ACC`` (%) of each seed's log.
_ACR_USB_SEEDS: Dict[str, Tuple[float, ...]] = {
    "cifar10_lb1500_100_ulb3000_100": (84.81, 84.16, 83.77),
    "cifar10_lb1500_100_ulb3000_-100": (86.12, 86.51, 86.31),
}
_add("fixmatch+acr", {s: round(sum(v) / len(v), 2) for s, v in _ACR_USB_SEEDS.items()},
     statistic="best", protocol="usb", network="wrn_28_2", per_seed=_ACR_USB_SEEDS,
     source="machengcheng2016/CPE-LTSSL saved_models/classic_cv_imb/"
            "fixmatch_acr_<setting>_<seed>/log.txt, BEST_EVAL_ACC of seeds 0, 1, 2",
     note="seed 0 of the consistent setting and all reversed seeds stop before 262,144 "
          "iterations (243,200 to 256,768)")


# --- CPE --------------------------------------------------------------------------------------

#: CPE's own runs in USB's protocol (its authors' fork): ``BEST_EVAL_ACC`` (%) of each seed's log.
_CPE_USB_SEEDS: Dict[str, Tuple[float, ...]] = {
    "cifar10_lb1500_100_ulb3000_-100": (87.28, 86.96, 87.03),
    "cifar10_lb1500_100_ulb3000_100": (84.79, 84.46, 84.07),
    "cifar10_lb1500_100_ulb3000_1": (85.84, 86.35, 85.38),
    "cifar10_lb1500_150_ulb3000_150": (82.46, 82.52, 81.77),
    "cifar10_lb500_100_ulb4000_-100": (83.85, 84.12, 83.69),
    "cifar10_lb500_100_ulb4000_100": (82.03, 80.16, 79.75),
    "cifar10_lb500_100_ulb4000_1": (82.49, 82.75, 81.73),
    "cifar10_lb500_150_ulb4000_150": (77.06, 76.03, 77.23),
}
_add("fixmatch+cpe", {s: round(sum(v) / len(v), 2) for s, v in _CPE_USB_SEEDS.items()},
     statistic="best", protocol="usb", network="wrn_28_2", per_seed=_CPE_USB_SEEDS,
     source="machengcheng2016/CPE-LTSSL saved_models/classic_cv_imb/"
            "fixmatch_cpe_<setting>_0_2_4_<seed>/log.txt, BEST_EVAL_ACC of seeds 0, 1, 2",
     note="the authors' wrn_28_2_cbn is WRN-28-2 with CPE's three batch norms (what cpe builds "
          "on wrn_28_2 here); five runs stop before 262,144 iterations (185,344 to 242,688)")


_SIMPRO_NOTE = ("the paper does not say which statistic its tables give; SimPro's released train.py "
                "logs the best top-1 (and the mean of the last 20 evaluations): recorded as best, as "
                "ACR's numbers, whose code it is built on")
_add("fixmatch+simpro", {
    "cifar10_lb500_150_ulb4000_150": 74.2,
    "cifar10_lb500_100_ulb4000_100": 80.7,
    "cifar10_lb500_150_ulb4000_1": 93.6,
    "cifar10_lb500_100_ulb4000_1": 93.8,
    "cifar10_lb500_150_ulb4000_-150": 83.5,
    "cifar10_lb500_100_ulb4000_-100": 85.8,
    "cifar100_lb50_20_ulb400_20": 43.1,
    "cifar100_lb50_20_ulb400_1": 52.2,
    "cifar100_lb50_20_ulb400_-20": 45.5,
    "cifar10_lb500_150_ulb4000_150_middle": 82.6,
    "cifar10_lb500_100_ulb4000_100_middle": 84.8,
    "cifar10_lb500_150_ulb4000_150_head-tail": 81.0,
    "cifar10_lb500_100_ulb4000_100_head-tail": 83.0,
    "cifar100_lb50_20_ulb400_20_middle": 43.6,
    "cifar100_lb50_20_ulb400_20_head-tail": 44.8,
    "stl10_lb450_10_ulbNone_1": 84.5,
    "stl10_lb450_20_ulbNone_1": 82.5,
}, statistic="best", protocol="simpro", network="wrn_28_2",
    source="SimPro paper (Du et al., ICML 2024), Table 1 (CIFAR-10-LT, N1 500, M1 4000) and "
           "Table 2 (CIFAR-100-LT gamma 20, N1 50, M1 400; STL-10-LT N1 450), w/ SimPro rows, "
           "consistent, uniform, reversed, middle and head-tail columns, "
           "mean of 3 seeds; the tables as LeapLabTHU/SimPro figures/exp1.png shows them",
    note=_SIMPRO_NOTE)


def _freeze(table: _Table) -> Dict[Tuple[str, str], Tuple[PublishedEntry, ...]]:
    return {k: tuple(v) for k, v in sorted(table.items())}


#: ``{(method, setting): (PublishedEntry, ...)}``.
PUBLISHED: Dict[Tuple[str, str], Tuple[PublishedEntry, ...]] = _freeze(_ENTRIES)


def candidates(method: str, setting: str, net: Optional[str] = PUBLISHED_NET
               ) -> Tuple[PublishedEntry, ...]:
    """Every entry for ``(method, setting)`` measured with ``net`` (any network when None)."""
    entries = PUBLISHED.get((normalise_method(method), canonical_setting(setting)), ())
    return tuple(e for e in entries if net is None or e.network == net)


def choose(entries: Iterable[PublishedEntry], statistic: Optional[str] = None,
           protocol: Optional[str] = None) -> Optional[PublishedEntry]:
    """The entry of ``statistic`` (any when None), one of ``protocol`` first; None if none."""
    pool = [e for e in entries if statistic is None or e.statistic == statistic]
    same = [e for e in pool if protocol is not None and e.protocol == protocol]
    return (same or pool or [None])[0]


def lookup(method: str, setting: str, net: Optional[str] = PUBLISHED_NET,
           statistic: Optional[str] = None, protocol: Optional[str] = None
           ) -> Optional[PublishedEntry]:
    """The published entry for ``(method, setting)`` or ``None``.

    ``method`` is normalised (lowercase, spaces removed), ``setting`` made canonical. Only
    entries of network ``net`` match; of those, ``statistic`` when given, and one of
    ``protocol`` before the others.
    """
    return choose(candidates(method, setting, net), statistic, protocol)
