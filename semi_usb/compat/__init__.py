"""The one place where semi_usb adapts semilearn 0.3.2, by concern.

semilearn is used as installed; nothing in site-packages is edited. The patches, each
naming the semilearn line it works around:

* :mod:`.trainer`: the trainer's batch, evaluation, checkpoint and timer (CPU, atomic
  writes, exact resume);
* :mod:`.protocol`: the protocol features the plugin adds (``lr_schedule``, two strong views);
* :mod:`.data`: splits, offline CIFAR, the plugin's datasets and unlabeled distributions;
* :mod:`.algorithms`: USB's own imbalanced algorithms (DASO's checkpoint, CReST on numpy 2,
  ABC's evaluation head).

Entry points:

* :func:`import_semilearn` makes ``import semilearn`` work where its optional experiment
  trackers (aim, wandb) are not installed. It is called by :func:`semi_usb.plugin.register`,
  which must import semilearn to register the algorithms.
* :func:`declare_attributes` gives two of semilearn's classes the attributes that the
  plugin's own algorithms declare (the head they predict with, whether their step takes two
  strong views); :func:`semi_usb.plugin.register` calls it.
* :func:`apply` installs the runtime patches. The trainer (``semi_usb.runner``) calls it
  explicitly; importing semi_usb does not.

Patches replace attributes of semilearn's own classes and modules only (never torch or
numpy globals), and :func:`apply` installs them once.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from typing import Any

from . import algorithms, data, protocol, trainer

_PATCHED = "_semi_usb_patched"


def _stub_tracker(name: str) -> types.ModuleType:
    """A placeholder for an optional tracker module that fails only when it is used."""
    module = types.ModuleType(name)

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ImportError(
            f"{name} is not installed: install it (pip install {name}) or leave use_{name}=False"
        )

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    module.__semi_usb_stub__ = True  # type: ignore[attr-defined]
    return module


def import_semilearn() -> types.ModuleType:
    """Import semilearn even where aim or wandb are missing.

    semilearn/core/hooks/aim.py and wandb.py do ``import aim`` / ``import wandb`` at module
    level, so ``import semilearn`` fails without them although they are only used when
    ``use_aim`` / ``use_wandb`` are set. Only when a tracker is really absent, a stub that
    raises on first use stands in for it.
    """
    for name in ("aim", "wandb"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = _stub_tracker(name)
    if "semilearn" in sys.modules:
        return sys.modules["semilearn"]
    with warnings.catch_warnings(), _home_in_a_temporary_folder():
        # semilearn/nets/vit imports timm.models.layers, deprecated in timm >= 0.9.
        warnings.filterwarnings("ignore", message="Importing from timm.models.layers is deprecated")
        import semilearn

    return semilearn


class _home_in_a_temporary_folder:
    """``HOME`` pointed at a temporary folder, removed afterwards, while semilearn is imported.

    Works around semilearn/datasets/cv_datasets/medmnist.py:23-37: ``get_default_root()``
    runs at import (``DEFAULT_ROOT = get_default_root()``) and creates ``~/.medmnist``, so
    every command, a refused one included, wrote into HOME. semilearn passes the data folder
    as ``root`` wherever it builds a MedMNIST set, so the default root is never read.
    """

    def __enter__(self):
        import os
        import tempfile

        self.saved = os.environ.get("HOME")
        self.folder = tempfile.mkdtemp(prefix="semi_usb_home_")
        os.environ["HOME"] = self.folder

    def __exit__(self, *exc):
        import os
        import shutil

        if self.saved is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = self.saved
        shutil.rmtree(self.folder, ignore_errors=True)
        return False


def declare_attributes() -> None:
    """What the plugin reads from an algorithm class, for two of semilearn's (idempotent):
    ``ABC.eval_head`` (:func:`.algorithms.declare`) and ``FixMatch.two_strong_views``
    (:func:`.protocol.declare`)."""
    algorithms.declare()
    protocol.declare()


def apply() -> None:
    """Install the runtime patches (once). Called by the trainer, not on import."""
    import_semilearn()
    from semilearn.core.algorithmbase import AlgorithmBase

    if getattr(AlgorithmBase, _PATCHED, False):
        return
    trainer.install()
    algorithms.install()
    protocol.install()
    data.install()
    setattr(AlgorithmBase, _PATCHED, True)
