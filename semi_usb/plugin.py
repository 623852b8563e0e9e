"""Registration of the plugin in semilearn's registries: one explicit, idempotent call.

    import semi_usb.plugin
    semi_usb.plugin.register()   # IMB_ALGORITHMS[<name>] of each folder imb_algorithms/<name>/ (now acr,
                                 # bacon, cdmad, cpe, semi, simpro); semilearn.nets.cnn_*

The ``semilearn`` command calls it where it needs the registries (configuration, training,
evaluation, compare's planning); a user of USB's own ``train.py`` calls it before
``get_imb_algorithm``. ``import semi_usb`` registers nothing.

The algorithms are found, not listed: each folder ``semi_usb/imb_algorithms/<name>/`` with a
module ``<name>.py`` (USB's layout: ``semilearn/imb_algorithms/daso/daso.py``) is imported,
and its ``@IMB_ALGORITHMS.register`` decorator registers it. Adding a method is adding its
folder (docs/adding_a_method.md).
"""
from __future__ import annotations

import importlib
import os


def algorithm_modules(package) -> list:
    """``<package>.<name>.<name>`` for each sub-package ``<name>`` of ``package`` that has a
    module of its own name, sorted by name."""
    names = []
    for folder in package.__path__:
        for name in sorted(os.listdir(folder)):
            if os.path.isfile(os.path.join(folder, name, "__init__.py")) and \
                    os.path.isfile(os.path.join(folder, name, f"{name}.py")):
                names.append(f"{package.__name__}.{name}.{name}")
    return names


def register() -> None:
    """Import semilearn (through :func:`semi_usb.compat.import_semilearn`), register the
    networks of :mod:`semi_usb.nets` in ``semilearn.nets`` and the algorithms under
    ``imb_algorithms/`` in ``IMB_ALGORITHMS`` (by importing their modules, whose
    ``@IMB_ALGORITHMS.register`` decorators run once). Calling it again changes nothing:
    the modules are imported once and the networks are set to the same builders."""
    from .compat import declare_attributes, import_semilearn

    import_semilearn()
    import semilearn.nets

    from . import imb_algorithms, nets

    for module in algorithm_modules(imb_algorithms):
        importlib.import_module(module)
    declare_attributes()
    nets.register(semilearn.nets)


def registries():
    """semilearn's ``(ALGORITHMS, IMB_ALGORITHMS)``, with the plugin registered."""
    register()
    from semilearn.core.utils import ALGORITHMS, IMB_ALGORITHMS

    return ALGORITHMS, IMB_ALGORITHMS
