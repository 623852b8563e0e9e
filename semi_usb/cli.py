"""The ``semilearn`` command: train, eval, data, compare, report.

Errors in input (configuration, data, checkpoints, report inputs: every
:class:`semi_usb.errors.InputError`) end with one line on stderr and exit status 2;
``--debug`` shows the traceback instead. Building the parser imports nothing heavy (no
torch, semilearn or matplotlib): each command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import InputError, UsageError

TRAIN_EPILOG = """\
Any USB key can be given as --key value (or --key=value). Precedence: defaults < --config
YAML < command-line flags. Note: USB's own train.py re-applies the YAML after parsing the
flags, so there the YAML wins; here the command line wins.

NAME is a base SSL algorithm (fixmatch, flexmatch, ...) or an imbalanced one (semi, acr,
daso, abc, ...), which runs on its base: --base, else the config's `algorithm`, else
fixmatch. `fixmatch+semi` names both. Use `semilearn train --algorithm NAME --help` for
every key of that method with its default.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semilearn", description="USB (semilearn 0.3.2) with the semi_usb plugin: "
                                     "SeMi and ACR for class-imbalanced semi-supervised learning.")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,data,compare,report}")

    # allow_abbrev=False: a USB key that is a prefix of an option (--conf, --seed for
    # compare's --seeds) must not be taken for that option
    t = sub.add_parser("train", help="train one algorithm", add_help=False, epilog=TRAIN_EPILOG, allow_abbrev=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="semilearn train --algorithm NAME [--config FILE] [--base BASE] [--any_usb_key VALUE ...]")
    t.add_argument("--algorithm", "-alg", dest="method", help="fixmatch, semi, acr, daso, abc, fixmatch+semi, ...")
    t.add_argument("--config", "-c", "--c", help="USB-style YAML file")
    t.add_argument("--base", help="base SSL algorithm of an imbalanced one (default fixmatch)")
    t.add_argument("-h", "--help", action="store_true")
    _add_common(t)

    e = sub.add_parser("eval", help="evaluate a checkpoint (EMA model, test set) and print its summary JSON")
    e.add_argument("--checkpoint", required=True, help="a .pth written by semilearn train")
    e.add_argument("--config", help="run configuration (default: config.yaml beside the checkpoint)")
    e.add_argument("--out", help="write the summary JSON here (default: eval_<checkpoint>.json beside it)")
    e.add_argument("--verbose", action="store_true", help="USB's log lines on stderr (stdout has only the JSON)")
    _add_common(e)

    d = sub.add_parser("data", help="prepare data offline")
    dsub = d.add_subparsers(dest="data_command", metavar="{import,import-idx}")
    di = dsub.add_parser("import", help="import an image folder or .tar.gz (train/<class>/*, test/<class>/*)")
    di.add_argument("source")
    di.add_argument("--dataset", default="imagefolder", choices=["cifar10", "cifar100", "imagefolder"],
                    help="cifar10/cifar100: write the files semilearn's CIFAR loader reads; imagefolder: copy the folder")
    di.add_argument("--name", help="folder name under data_dir for --dataset imagefolder (default: imagefolder)")
    di.add_argument("--data_dir", default="./data")
    _add_common(di)
    dx = dsub.add_parser("import-idx", help="MNIST-format idx files -> image folder (e.g. Debian's dataset-fashion-mnist)")
    dx.add_argument("source", help="folder with train-images-idx3-ubyte[.gz] ... t10k-labels-idx1-ubyte[.gz]")
    dx.add_argument("out", help="image folder to create (train/<k>_<class>/, test/...)")
    dx.add_argument("--classes", default=None, help="comma list of class names, or 'fashion-mnist'")
    _add_common(dx)

    for name in ("compare", "report"):
        module = __import__(f"semi_usb.{name}", fromlist=["add_parser"])
        module.add_parser(sub)
    return parser


def _train(ns, extra: list) -> int:
    from .config import build_args, describe_keys, parse_flags, split_method
    from .naming import method_label

    if ns.help:
        algorithm, imb = (split_method(ns.method, ns.base) if ns.method else (None, None))
        build_parser()._subparsers._group_actions[0].choices["train"].print_help()
        print("\nkeys" + (f" of {method_label(algorithm, imb)}" if algorithm else " (USB base)") + ":")
        print(describe_keys(algorithm, imb))
        return 0
    if not ns.method and not ns.config:
        raise UsageError("train needs --algorithm NAME or --config FILE")
    notes: list = []  # printed once the run has started (runner.train), never before an error
    args = build_args(ns.method, ns.config, parse_flags(extra), ns.base, warn=notes.append)
    from .layout import run_dir, summary_path
    from .preempt import Preempted
    from .runner import train

    try:
        summary = train(args, notes)
    except Preempted as stop:  # a scheduler's signal: checkpoint saved, exit 75 (semi_usb/preempt.py)
        print(f"semilearn train: {stop.message}", file=sys.stderr)
        return stop.code
    if summary is not None:
        f = summary["final"]
        print(f"{summary['method']} on {summary['setting']} (seed {summary['seed']}), {summary['iterations_done']} iterations: "
              f"top-1 {100 * f['top1']:.2f}%  balanced {100 * f['balanced_acc']:.2f}%  "
              f"(EMA model, {summary['head']} head) -> {summary_path(run_dir(args))}")
    return 0


def _eval(ns) -> int:
    from .checkpoint import atomic_json_dump
    from .config import build_args
    from .errors import CheckpointError
    from .evaluation import evaluate_checkpoint
    from .layout import config_path, eval_output_path

    if not os.path.isfile(ns.checkpoint):
        raise CheckpointError(f"checkpoint not found: {ns.checkpoint}")
    config = ns.config or config_path(os.path.dirname(ns.checkpoint))
    if not os.path.isfile(config):
        raise CheckpointError(f"no run configuration beside {ns.checkpoint} (looked for {config}): pass --config")
    notes: list = []  # printed after the evaluation, never before an error
    args = build_args(None, config, {"resume": False, "verbose": ns.verbose}, warn=notes.append)
    summary = evaluate_checkpoint(args, ns.checkpoint)
    out = ns.out or eval_output_path(ns.checkpoint)
    try:
        atomic_json_dump(summary, out)
    except OSError as exc:
        raise CheckpointError(f"cannot write {out} ({exc.strerror or exc}): choose a writable --out") from None
    print(json.dumps(summary))
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def _data(ns) -> int:
    from .data_import import FASHION_MNIST_CLASSES, import_idx, import_image_folder

    if ns.data_command == "import-idx":
        names = FASHION_MNIST_CLASSES if ns.classes == "fashion-mnist" else (ns.classes.split(",") if ns.classes else None)
        path = import_idx(ns.source, ns.out, names)
    elif ns.data_command == "import":
        path = import_image_folder(ns.source, ns.data_dir, ns.dataset, ns.name)
    else:
        raise UsageError("data needs a subcommand: import or import-idx")
    print(f"imported {ns.source} -> {path}")
    return 0


def main(argv: list | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 2
    ns, extra = parser.parse_known_args(argv)
    debug = getattr(ns, "debug", False) or "--debug" in extra
    extra = [a for a in extra if a != "--debug"]
    if ns.command is None:
        parser.print_help()
        return 2
    if ns.command != "train" and extra and not getattr(ns, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if ns.command == "train":
            return _train(ns, extra)
        if ns.command == "eval":
            return _eval(ns)
        if ns.command == "data":
            return _data(ns)
        return ns.func(ns, extra) if getattr(ns, "takes_extra", False) else ns.func(ns)
    except KeyboardInterrupt:
        print("semilearn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not isinstance(exc, InputError):
            raise
        print(f"semilearn {ns.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
