"""Run configuration: USB's arguments, the algorithms' ``SSL_Argument`` lists, a YAML file and
command-line flags merged into one ``argparse.Namespace``.

Precedence: defaults < YAML (``--config``) < command-line flags. (USB's ``train.py``
re-applies the YAML after parsing, so there the YAML wins; here what you type wins.)
Unknown keys, wrong types and impossible settings are errors (:class:`ConfigError`), with
the closest valid key suggested.
"""
from __future__ import annotations

import argparse
import difflib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from .errors import ConfigError, brief
from .imb_algorithms.arguments import RangeError
from .naming import method_folder, method_label, rename_method, setting_name
from .plugin import registries
from .ulb_distribution import check as check_ulb_distribution


def str2bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if isinstance(v, str) and v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def number(v: Any) -> int | float:
    """An imbalance ratio: int when integral (USB names files ``_100_``), else float."""
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    f = float(v)
    return int(f) if f.is_integer() and not (isinstance(v, str) and "." in v) else f


def optional(t: Callable) -> Callable:
    def parse(v: Any):
        if v is None or (isinstance(v, str) and v in ("None", "null", "")):
            return None
        return t(v)

    parse.__name__ = f"optional {getattr(t, '__name__', t)}"
    return parse


@dataclass(frozen=True)
class Key:
    name: str
    type: Callable
    default: Any
    help: str = ""
    #: says where and how a run executes, not what it computes: may differ when a run is
    #: resumed (another machine, more loader workers, the DDP rendezvous of the new launch)
    runtime: bool = False


# USB's own arguments (train.py / semilearn.lighting.get_config), plus the plugin's runner keys.
BASE_KEYS = [
    Key("save_dir", str, "./saved_models", "folder of runs", runtime=True),
    Key("save_name", optional(str), None, "run name (default: <method>_<dataset>_<seed>)", runtime=True),
    Key("resume", str2bool, False, "resume save_dir/save_name from load_path (default: its latest_model.pth)",
        runtime=True),
    Key("load_path", optional(str), None, "checkpoint to resume from", runtime=True),
    Key("overwrite", str2bool, True, "accepted for USB configs; semi_usb never deletes a run", runtime=True),
    Key("use_tensorboard", str2bool, True, "write TensorBoard logs under save_dir/save_name/tensorboard", runtime=True),
    Key("use_wandb", str2bool, False, runtime=True), Key("use_aim", str2bool, False, runtime=True),
    Key("epoch", int, 1), Key("num_train_iter", int, 20), Key("num_warmup_iter", int, 0),
    Key("num_eval_iter", int, 10), Key("num_log_iter", int, 5, runtime=True),
    Key("num_labels", int, 400, "labeled images (of the head class when lb_imb_ratio != 1)"),
    Key("batch_size", int, 8), Key("uratio", int, 1), Key("eval_batch_size", int, 16, runtime=True),
    Key("ema_m", float, 0.999), Key("ulb_loss_ratio", float, 1.0),
    Key("optim", str, "SGD"), Key("lr", float, 0.03), Key("momentum", float, 0.9),
    Key("weight_decay", float, 5e-4), Key("layer_decay", float, 1.0),
    Key("net", str, "wrn_28_2"), Key("net_from_name", str2bool, False),
    Key("use_pretrain", str2bool, False), Key("pretrain_path", str, ""),
    Key("algorithm", str, "fixmatch", "base SSL algorithm"),
    Key("imb_algorithm", optional(str), None, "imbalanced algorithm on top of the base"),
    Key("use_cat", str2bool, True), Key("amp", str2bool, False), Key("clip_grad", float, 0.0),
    Key("data_dir", str, "./data", runtime=True), Key("dataset", str, "cifar10"), Key("num_classes", int, 10),
    Key("train_sampler", str, "RandomSampler"), Key("num_workers", int, 1, runtime=True),
    Key("include_lb_to_ulb", str2bool, True),
    Key("lb_imb_ratio", number, 1, "gamma_l"), Key("ulb_imb_ratio", number, 1, "gamma_u (negative: reversed)"),
    Key("ulb_num_labels", optional(int), None, "M1: unlabeled images of the head class"),
    Key("ulb_distribution", str, "usb",
        "unlabeled class distribution: usb (ulb_imb_ratio's consistent / uniform / reversed), middle or head-tail "
        "(SimPro's: the same counts, largest in the middle classes or at both ends)"),
    Key("img_size", int, 32), Key("crop_ratio", float, 0.875),
    Key("max_length", int, 512), Key("max_length_seconds", float, 4.0), Key("sample_rate", int, 16000),
    Key("world_size", int, 1, runtime=True), Key("rank", int, 0, runtime=True),
    Key("dist_url", str, "tcp://127.0.0.1:11111", runtime=True),
    Key("dist_backend", str, "nccl", runtime=True), Key("seed", int, 1),
    Key("gpu", optional(int), None, "GPU id; None: all GPUs (DDP when multiprocessing_distributed)", runtime=True),
    Key("multiprocessing_distributed", str2bool, False, "one DDP process per GPU (ignored without CUDA)", runtime=True),
    Key("data_pipeline", str, "usb",
        "usb: USB's loaders (PIL augmentation in workers); gpu: images held and augmented on the training device"),
    # --- protocol keys (docs/protocols.md, "Learning-rate schedule", "Strong views") ---
    Key("lr_schedule", str, "usb",
        "usb: USB's (cosine for base algorithms, constant for imbalanced ones on CIFAR/STL); cosine: USB's 7/16 "
        "cosine for every algorithm; constant: no schedule"),
    Key("num_strong_views", int, 1,
        "strong views per unlabeled image: 1 (USB) or 2 (SeMi's, ACR's and CDMAD's authors; fixmatch, acr, semi, cpe, cdmad)"),
    # --- end protocol keys ---
    Key("semi_usb_bf16", str2bool, False,
        "bf16 autocast of the training step (losses and pseudo-labels stay in float32); USB's amp is fp16 + GradScaler"),
    Key("semi_usb_channels_last", str2bool, False, "channels_last memory format for the model (faster convolutions on GPUs)"),
    Key("semi_usb_num_threads", int, 0,
        "CPU threads of torch; 0: the cores left after the data-loading workers (OpenMP threads that compete "
        "with workers for the same cores run several times slower)", runtime=True),
    Key("verbose", str2bool, False, "USB's log lines on the console too (they always go to log.txt)", runtime=True),
    Key("semi_usb_nonfinite_patience", int, 20,
        "non-finite loss/gradient steps in a row before training stops (skipped steps are counted); 0 disables the check",
        runtime=True),
]

#: The keys a resumed run may change (:attr:`Key.runtime`).
RUNTIME_KEYS = frozenset(k.name for k in BASE_KEYS if k.runtime)

# Keys that USB's published configs carry but that no code reads; accepted with a warning.
USB_NOOP_KEYS = {"clip": "USB ignores it (the real key is clip_grad)", "c": "config path of USB's train.py"}
# Keys of earlier versions of the plugin that another key replaced: refused, naming it.
REPLACED_KEYS = {"acr_hist_counts": "acr_class_vector (presence for False, counts for True; default acr_code)"}
ALIASES = {"use_amp": "amp", "world-size": "world_size", "dist-url": "dist_url", "dist-backend": "dist_backend",
           "multiprocessing-distributed": "multiprocessing_distributed"}


def algorithm_keys(algorithm: str, imb_algorithm: str | None) -> list:
    """The ``SSL_Argument`` lists of the base and the imbalanced algorithm, as Keys."""
    ALGORITHMS, IMB_ALGORITHMS = registries()

    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {brief(algorithm)}{_suggest(algorithm, ALGORITHMS.keys())}"
                          f" (base algorithms: {', '.join(sorted(ALGORITHMS.keys()))})")
    sources = [ALGORITHMS[algorithm]]
    if imb_algorithm is not None:
        if imb_algorithm not in IMB_ALGORITHMS:
            raise ConfigError(f"unknown imbalanced algorithm {brief(imb_algorithm)}{_suggest(imb_algorithm, IMB_ALGORITHMS.keys())}"
                              f" (imbalanced algorithms: {', '.join(sorted(IMB_ALGORITHMS.keys()))})")
        sources.append(IMB_ALGORITHMS[imb_algorithm])
        bases = getattr(sources[-1], "base_algorithms", None)  # acr, semi: fixmatch only
        if bases is not None and algorithm not in bases:
            raise ConfigError(f"{imb_algorithm} runs on {', '.join(bases)} only (got {algorithm})")
    keys = []
    for cls in sources:
        for a in cls.get_argument():
            keys.append(Key(a.name.lstrip("-"), _usb_type(a.type, a.default), a.default, a.help))
    return keys


def other_algorithm_keys() -> dict:
    """Every registered algorithm's keys -> the algorithm, so that a shared config file
    (one for several methods) can carry them; a key of none of them is an error."""
    ALGORITHMS, IMB_ALGORITHMS = registries()

    owners = {}
    for registry in (ALGORITHMS, IMB_ALGORITHMS):
        for name in registry.keys():
            try:
                for a in registry[name].get_argument():
                    owners.setdefault(a.name.lstrip("-"), name)
            except Exception:  # an algorithm whose argument list cannot be built
                continue
    return owners


def _usb_type(t: Callable, default: Any) -> Callable:
    if getattr(t, "__name__", "") == "str2bool":
        return str2bool
    return optional(t) if default is None else t


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the
    last silently, so one of the two values would be ignored without a word) and every
    alias (``*name``): nested anchors expand exponentially (a 1.4 KB file can fill the
    memory, through the error message that quotes the value), and a flat configuration
    file has no need of them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{str(event.anchor)[:40]}: anchors and aliases are not accepted in a config "
                "file (write each value out)", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: "
                          f"{' '.join(str(getattr(exc, 'problem', None) or exc).split())[:200]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value")
    return {ALIASES.get(str(k), str(k)): v for k, v in data.items()}


def parse_flags(argv: list) -> dict:
    """``--key value`` / ``--key=value`` / a bare ``--flag`` (True) into a dict of strings."""
    out, i = {}, 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"unexpected argument {brief(tok)}: flags are --key value")
        key, eq, val = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                val, i = argv[i + 1], i + 1
            else:
                val = True
        out[ALIASES.get(key, key.replace("-", "_") if key.replace("-", "_") in _BASE_NAMES else key)] = val
        i += 1
    return out


_BASE_NAMES = {k.name for k in BASE_KEYS}


def split_method(name: str, base: str | None = None) -> tuple[str, str | None]:
    """``semi`` -> (fixmatch, semi); ``fixmatch`` -> (fixmatch, None); ``flexmatch+daso`` names both."""
    ALGORITHMS, IMB_ALGORITHMS = registries()

    if "+" in name:
        b, imb = name.split("+", 1)
        return b, imb
    if name in IMB_ALGORITHMS and name not in ALGORITHMS:
        return base or "fixmatch", name
    if name in ALGORITHMS:
        return name, None
    both = list(ALGORITHMS.keys()) + list(IMB_ALGORITHMS.keys())
    raise ConfigError(f"unknown algorithm {brief(name)}{_suggest(name, both)}; base: {', '.join(sorted(ALGORITHMS.keys()))};"
                      f" imbalanced: {', '.join(sorted(IMB_ALGORITHMS.keys()))}")


def build_args(method: str | None = None, config: str | None = None, flags: dict | None = None,
               base: str | None = None, warn: Callable = print) -> argparse.Namespace:
    """Merge defaults, the YAML file and the flags; validate; return USB's ``args``."""
    flags = dict(flags or {})
    file_values = load_yaml(config) if config else {}
    algorithm = file_values.get("algorithm", "fixmatch")
    imb = file_values.get("imb_algorithm")
    imb = None if imb in (None, "None", "null") else imb
    file_method = method_folder(algorithm, imb)
    if "algorithm" in flags or "imb_algorithm" in flags:
        algorithm = flags.pop("algorithm", algorithm)
        imb = optional(str)(flags.pop("imb_algorithm", imb))
    if method is not None:
        algorithm, imb = split_method(method, base or file_values.get("algorithm"))
    elif base is not None:
        algorithm = base
    keys = {k.name: k for k in BASE_KEYS + algorithm_keys(algorithm, imb)}
    other = other_algorithm_keys()

    values = {name: k.default for name, k in keys.items()}
    ignored = []
    for source, given in (("config file", file_values), ("command line", flags)):
        for name, raw in given.items():
            if name in ("algorithm", "imb_algorithm"):
                continue
            if name in USB_NOOP_KEYS:
                warn(f"note: key {name!r} in the {source} does nothing: {USB_NOOP_KEYS[name]}")
                continue
            if name in REPLACED_KEYS:
                raise ConfigError(f"key {name!r} in the {source} was replaced by {REPLACED_KEYS[name]}")
            if name not in keys and name in other:
                ignored.append(f"{name} ({other[name]})")
                continue
            if name not in keys:
                raise ConfigError(f"unknown key {brief(name)} in the {source}{_suggest(name, keys)}"
                                  f" (for {method_label(algorithm, imb)})")
            values[name] = _convert(keys[name], raw, source)
    if ignored:
        warn(f"note: ignored keys of other methods (not {method_label(algorithm, imb)}): {', '.join(ignored)}")
    values["algorithm"], values["imb_algorithm"] = algorithm, imb
    follow_command_line(values, file_values, flags, file_method, warn)
    args = argparse.Namespace(**values)
    finalize(args)
    return args


def follow_command_line(values: dict, file_values: dict, flags: dict, file_method: str, warn: Callable) -> None:
    """What the command line changes beyond the keys it names (README, "Train").

    * Another method than the config file's, without ``--save_name``: the config's
      ``save_name`` with its method part replaced (:func:`semi_usb.naming.rename_method`);
      an error when that name does not start with the config's method.
    * ``--save_dir`` / ``--save_name`` (or the renamed run) move the config's ``load_path``
      along when it is the default one (``<save_dir>/<save_name>/latest_model.pth`` of the
      config's own keys); ``--load_path`` wins.
    * ``epoch`` from the config file (or the default) that does not divide
      ``num_train_iter``, and no ``--epoch``: ``num_train_iter / num_eval_iter`` when that
      divides, else 1 (one epoch of ``num_train_iter`` iterations).
    """
    from .layout import checkpoint_path

    method = method_folder(values["algorithm"], values["imb_algorithm"])
    file_name = file_values.get("save_name")
    if file_name and "save_name" not in flags and method != file_method:
        renamed = rename_method(str(file_name), file_method, method)
        if renamed is None:
            raise ConfigError(f"the config's save_name {brief(file_name)} does not start with its method {file_method!r} "
                              f"but {method} runs: pass --save_name")
        values["save_name"] = renamed
        warn(f"note: run name {renamed} (the config's save_name {file_name} names {file_method})")
    file_load = file_values.get("load_path")
    if file_load and file_name and "load_path" not in flags:
        file_dir = str(file_values.get("save_dir", BASE_KEYS[0].default))
        moved = (values["save_dir"], values["save_name"]) != (file_dir, file_name)
        default = checkpoint_path(os.path.join(file_dir, str(file_name)))
        if moved and os.path.normpath(str(file_load)) == os.path.normpath(default):
            values["load_path"] = None  # finalize: <save_dir>/<save_name>/latest_model.pth
    n, e, epoch = values["num_train_iter"], values["num_eval_iter"], values["epoch"]
    if "epoch" not in flags and min(n, e, epoch) >= 1 and n % epoch:
        values["epoch"] = n // e if n % e == 0 else 1
        warn(f"note: epoch {values['epoch']} (the config's epoch {epoch} does not divide num_train_iter {n}; "
             + ("num_train_iter / num_eval_iter)" if n % e == 0 else "num_eval_iter does not divide it either)"))


def _convert(key: Key, raw: Any, source: str) -> Any:
    t = key.type
    base = getattr(t, "base", t)  # a type with a declared range (imb_algorithms.arguments) checks it
    try:
        if base is int and isinstance(raw, (bool, float)) and not (isinstance(raw, float) and raw.is_integer()):
            raise ValueError
        if base is float and isinstance(raw, bool):
            raise ValueError
        if base is str and not isinstance(raw, str):
            raise ValueError
        return t(raw)
    except RangeError as exc:
        raise ConfigError(f"{key.name} {exc}") from None
    except (ValueError, TypeError):
        tname = getattr(t, "__name__", str(t))
        raise ConfigError(f"key {key.name!r} in the {source}: expected {tname}, got {brief(raw)}") from None


# Datasets whose long tail is their own: USB's loader ignores the imbalance keys.
NATURAL_TAIL = {"imagenet127"}


def finalize(args: argparse.Namespace) -> None:
    """Derived keys, then the checks: every numeric key within its declared range and the
    run folder inside save_dir (:mod:`semi_usb.ranges`), then what needs several keys at once."""
    from .datasets import NUM_CLASSES
    from .ranges import check_save_name, validate_ranges
    from .layout import checkpoint_path

    if args.save_name is None:
        args.save_name = f"{method_folder(args.algorithm, args.imb_algorithm)}_{setting_name(args)}_{args.seed}"
    if args.load_path is None:
        args.load_path = checkpoint_path(os.path.join(args.save_dir, args.save_name))
    validate_ranges(args)  # sizes >= 1 from here on: the divisions below are defined
    check_algorithm_arguments(args)
    check_save_name(args)
    if args.num_train_iter % args.epoch:
        raise ConfigError(f"num_train_iter {args.num_train_iter} is not divisible by epoch {args.epoch}")
    for key in ("lb_imb_ratio", "ulb_imb_ratio"):
        if not math.isfinite(getattr(args, key)):
            raise ConfigError(f"{key} must be a finite number, got {getattr(args, key)}")
    if args.lb_imb_ratio < 1:
        raise ConfigError(f"lb_imb_ratio (gamma_l) must be >= 1, got {args.lb_imb_ratio}")
    if abs(args.ulb_imb_ratio) < 1:
        raise ConfigError(f"ulb_imb_ratio (gamma_u) must be 1 or |gamma_u| > 1 (negative: reversed), got {args.ulb_imb_ratio}")
    if args.ulb_imb_ratio != 1 and args.ulb_num_labels is None and args.dataset not in NATURAL_TAIL:
        raise ConfigError(f"ulb_imb_ratio={args.ulb_imb_ratio} needs ulb_num_labels (M1)")
    if args.lb_imb_ratio == 1 and args.num_labels % args.num_classes:
        raise ConfigError(f"balanced labeled set: num_labels {args.num_labels} must be divisible by num_classes {args.num_classes}")
    check_dataset_name(args.dataset)
    if args.optim not in OPTIMIZERS:
        raise ConfigError(f"unknown optim {brief(args.optim)}{_suggest(args.optim, OPTIMIZERS)} "
                          f"(semilearn builds {', '.join(OPTIMIZERS)})")
    if args.rank >= args.world_size:
        raise ConfigError(f"rank {args.rank} must be below world_size {args.world_size}")
    expected = NUM_CLASSES.get(args.dataset)
    if expected is not None and args.num_classes != expected:
        raise ConfigError(f"num_classes={args.num_classes} but {args.dataset} has {expected} classes")
    if args.data_pipeline not in ("usb", "gpu"):
        raise ConfigError(f"data_pipeline must be 'usb' or 'gpu', got {brief(args.data_pipeline)}")
    check_protocol_keys(args)
    check_ulb_distribution(args)
    args.distributed = False  # set by the runner once it knows the devices


def method_class(algorithm: str, imb_algorithm: str | None):
    """The class whose step runs: the imbalanced algorithm's, else the base's."""
    ALGORITHMS, IMB_ALGORITHMS = registries()
    return IMB_ALGORITHMS[imb_algorithm] if imb_algorithm is not None else ALGORITHMS[algorithm]


def check_algorithm_arguments(args: argparse.Namespace) -> None:
    """An algorithm's own check of its keys together (``check_arguments``, e.g. ACR's
    ``acr_tau_min <= acr_tau_max``), as a one-line error."""
    check = getattr(method_class(args.algorithm, args.imb_algorithm), "check_arguments", None)
    if check is not None:
        try:
            check(args)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


# semilearn/core/utils/build.py get_optimizer: `if optim_name == 'SGD' ... elif 'AdamW'`,
# anything else ends in UnboundLocalError.
OPTIMIZERS = ("SGD", "AdamW")


def check_dataset_name(dataset: str) -> None:
    """A dataset that semilearn or the plugin can load (one line, with the closest name)."""
    from .datasets import known_datasets

    known = known_datasets()
    if dataset not in known:
        raise ConfigError(f"unknown dataset {brief(dataset)}{_suggest(str(dataset), known)} "
                          f"(known: {', '.join(sorted(known))})")


LR_SCHEDULES = ("usb", "cosine", "constant")


def check_protocol_keys(args: argparse.Namespace) -> None:
    """``lr_schedule`` a known value; two strong views (``num_strong_views``, in [1, 2] by
    :data:`semi_usb.ranges.RANGES`) only where a step uses them: the methods whose class says
    ``two_strong_views`` (docs/protocols.md, "Strong views")."""
    if args.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {brief(args.lr_schedule)}")
    if args.num_strong_views == 2 and not getattr(method_class(args.algorithm, args.imb_algorithm),
                                                  "two_strong_views", False):
        ALGORITHMS, IMB_ALGORITHMS = registries()
        able = sorted(name for registry in (ALGORITHMS, IMB_ALGORITHMS) for name in registry.keys()
                      if getattr(registry[name], "two_strong_views", False))
        raise ConfigError(f"num_strong_views 2 is supported by {', '.join(able)} only "
                          f"(got {method_label(args.algorithm, args.imb_algorithm)})")


def to_yaml_dict(args: argparse.Namespace) -> dict:
    """The effective configuration, as saved beside a run's checkpoints."""
    derived = {"distributed", "lb_dest_len", "ulb_dest_len"}  # set by the runner / USB, not configurable
    return {k: v for k, v in sorted(vars(args).items())
            if k not in derived and isinstance(v, (str, int, float, bool, type(None)))}


def describe_keys(algorithm: str | None, imb: str | None) -> str:
    """Help text listing every key of a method with its default."""
    keys = list(BASE_KEYS)
    if algorithm:
        keys += algorithm_keys(algorithm, imb)
    width = max(len(k.name) for k in keys) + 2
    return "\n".join(f"  --{k.name:<{width}} {k.default!r:<14} {k.help}" for k in keys)
