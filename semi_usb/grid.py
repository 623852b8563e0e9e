"""Grids for ``semilearn compare``: methods x settings x seeds, named or from the command line.

A named grid (``--grid NAME``) gives the three axes and the folder of protocol files; any of
``--algorithms``, ``--setting``, ``--seeds`` given on the command line replaces that axis.
``classic_cv_imb`` is USB's classic_cv_imb table as ``semi_usb.published`` holds it: its nine
CIFAR-10-LT / CIFAR-100-LT settings, FixMatch and the imbalanced methods on it, seeds 0-2,
from the protocol files in ``config/classic_cv_imb/``.
"""
from __future__ import annotations

from .published import USB_TABLE_COLUMNS

GRIDS = {
    "classic_cv_imb": {"algorithms": ("fixmatch", "daso", "abc", "acr", "semi"), "settings": USB_TABLE_COLUMNS,
                       "seeds": (0, 1, 2), "config_dir": "config/classic_cv_imb"},
}
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_CONFIG_DIR = "config/classic_cv_imb"


def _split(text: str | None) -> list:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def axes(grid: str | None, algorithms: str | None, settings: str | None, seeds: str | None,
         config_dir: str | None) -> tuple:
    """(algorithms, settings, seeds, config_dir): the named grid's, each replaced by the
    command line's when given."""
    from .config import ConfigError

    if grid is not None and grid not in GRIDS:
        raise ConfigError(f"unknown grid {grid!r} (known: {', '.join(sorted(GRIDS))})")
    named = GRIDS.get(grid, {})
    algs = _split(algorithms) or list(named.get("algorithms", ()))
    sets = _split(settings) or list(named.get("settings", ()))
    if not algs or not sets:
        raise ConfigError("compare needs --algorithms and --setting, or --grid NAME (known: "
                          f"{', '.join(sorted(GRIDS))})")
    try:
        seed_list = [int(s) for s in _split(seeds)] or list(named.get("seeds", DEFAULT_SEEDS))
    except ValueError:
        raise ConfigError(f"--seeds must be a comma list of integers, got {seeds!r}") from None
    return algs, sets, seed_list, config_dir or named.get("config_dir", DEFAULT_CONFIG_DIR)


def plan_grid(algorithms: list, settings: list, seeds: list, config_dir: str, base_config: str | None,
              save_dir: str, overrides: list) -> list:
    """Every run of the grid (:func:`semi_usb.compare.plan` per setting), settings outermost."""
    from .compare import plan

    return [run for setting in settings
            for run in plan(algorithms, setting, seeds, config_dir, base_config, save_dir, overrides)]


def expand_save_dirs(paths) -> list:
    """Each path as given, except a folder that is not a run but holds runs (a compare
    ``--save_dir``, or a folder of such folders): the run folders under it (those with
    ``config.yaml`` or ``summary.json``), sorted, found at any depth."""
    import os

    marks = ("summary.json", "config.yaml")

    def is_run(p: str) -> bool:
        return any(os.path.isfile(os.path.join(p, m)) for m in marks)

    def runs_under(p: str) -> list:
        if is_run(p) or not os.path.isdir(p):
            return [p] if is_run(p) else []
        return [r for d in sorted(os.listdir(p)) for r in runs_under(os.path.join(p, d))]

    out = []
    for p in map(str, paths):
        out.extend(runs_under(p) or [p])
    return out
