"""The plan of ``semilearn compare``: methods x settings x seeds, named or from the command
line, one run each (its folder, config file and ``semilearn train`` flags), checked before
anything runs.

A named grid (``--grid NAME``) gives the three axes and the folder of protocol files; any of
``--algorithms``, ``--setting``, ``--seeds`` given on the command line replaces that axis.
``classic_cv_imb`` is USB's classic_cv_imb table as ``semi_usb.published`` holds it: its nine
CIFAR-10-LT / CIFAR-100-LT settings, FixMatch and the imbalanced methods on it, seeds 0-2,
from the protocol files in ``config/classic_cv_imb/``.
"""
from __future__ import annotations

import os

from .errors import ConfigError
from .layout import checkpoint_path, config_path
from .naming import method_folder, parse_setting
from .published import USB_TABLE_COLUMNS

GRIDS = {
    "classic_cv_imb": {"algorithms": ("fixmatch", "daso", "abc", "acr", "semi", "cpe", "cdmad", "simpro", "bacon"),
                       "settings": USB_TABLE_COLUMNS, "seeds": (0, 1, 2), "config_dir": "config/classic_cv_imb"},
}
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_CONFIG_DIR = "config/classic_cv_imb"


def _split(text: str | None) -> list:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def axes(grid: str | None, algorithms: str | None, settings: str | None, seeds: str | None,
         config_dir: str | None) -> tuple:
    """(algorithms, settings, seeds, config_dir): the named grid's, each replaced by the
    command line's when given."""
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


def plan(algorithms: list, setting: str, seeds: list, config_dir: str, base_config: str | None,
         save_dir: str, overrides: list) -> list:
    """One run per (algorithm, seed): its name, folder, and the method, config file and
    flags of its ``semilearn train`` command."""
    from .config import split_method
    from .datasets import NUM_CLASSES

    runs = []
    keys = parse_setting(setting)
    for alg in algorithms:
        mdir = method_folder(*split_method(alg))  # fixmatch, fixmatch_daso, ... (the base as train picks it)
        for seed in seeds:
            name = f"{mdir}_{setting}_{seed}"
            protocol = os.path.join(config_dir, mdir, f"{name}.yaml")
            if os.path.isfile(protocol) and not base_config:
                config, flags = protocol, []
            elif base_config:
                # an image-folder setting is named after its folder: the base file names the data
                known = keys["dataset"] in NUM_CLASSES
                config, flags = base_config, [f"--{k}={v}" for k, v in keys.items() if known or k != "dataset"]
            else:
                raise ConfigError(f"no protocol config {protocol} and no --config base file for setting {setting}")
            run = os.path.join(save_dir, name)
            # USB's protocol files name their own load_path: point it at this run's folder
            flags += [f"--seed={seed}", f"--save_name={name}", f"--save_dir={save_dir}", "--resume=True",
                      f"--load_path={checkpoint_path(run)}"] + overrides
            runs.append({"name": name, "dir": run, "algorithm": alg, "config": config, "flags": flags})
    return runs


def plan_grid(algorithms: list, settings: list, seeds: list, config_dir: str, base_config: str | None,
              save_dir: str, overrides: list) -> list:
    """Every run of the grid (:func:`plan` per setting), settings outermost."""
    return [run for setting in settings
            for run in plan(algorithms, setting, seeds, config_dir, base_config, save_dir, overrides)]


#: Keys compare sets for each run itself; given as an override they would make every run the same.
PER_RUN_KEYS = {"seed": "--seeds", "save_name": "--save_dir", "load_path": "--save_dir", "resume": None}


def check_overrides(extra: list) -> None:
    """One-line error for an override of a key that compare sets per run (``--seed 3``
    would give every run seed 3 under the names of seeds 0, 1, 2)."""
    for item in extra:
        key = item[2:].split("=", 1)[0] if item.startswith("--") else None
        if key in PER_RUN_KEYS:
            use = PER_RUN_KEYS[key]
            raise ConfigError(f"--{key} is set by compare for each run" + (f": use {use}" if use else
                              " (finished runs are skipped, interrupted ones resume)"))


def check_existing(runs: list) -> None:
    """Every run's configuration is built (and so validated: unknown keys, types, ranges)
    before the first one starts; one-line error when one is bad, or when a run folder
    that already exists holds another configuration (a finished run would otherwise count
    as done with, say, the old budget; an unfinished one would fail when its turn comes)."""
    from .config import build_args, parse_flags
    from .run_folder import check_same_experiment

    for r in runs:
        args = build_args(r["algorithm"], r["config"], parse_flags(r["flags"]), warn=lambda m: None)
        if os.path.isfile(config_path(r["dir"])):
            check_same_experiment(args, r["dir"])
