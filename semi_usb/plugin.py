"""Registration of the plugin in semilearn's registries: one explicit, idempotent call.

    import semi_usb.plugin
    semi_usb.plugin.register()   # IMB_ALGORITHMS['acr'], ['semi']; semilearn.nets.cnn_*

The ``semilearn`` command calls it where it needs the registries (configuration, training,
evaluation, compare's planning); a user of USB's own ``train.py`` calls it before
``get_imb_algorithm``. ``import semi_usb`` registers nothing.
"""
from __future__ import annotations


def register() -> None:
    """Import semilearn (through :func:`semi_usb.compat.import_semilearn`), register the
    networks of :mod:`semi_usb.nets` in ``semilearn.nets`` and the two algorithms in
    ``IMB_ALGORITHMS`` (by importing their modules, whose ``@IMB_ALGORITHMS.register``
    decorators run once). Calling it again changes nothing: the modules are imported once
    and the networks are set to the same builders."""
    from .compat import import_semilearn

    import_semilearn()
    import semilearn.nets

    from . import nets
    from .imb_algorithms.acr import acr  # noqa: F401  (registers IMB_ALGORITHMS['acr'])
    from .imb_algorithms.cdmad import cdmad  # noqa: F401  (registers IMB_ALGORITHMS['cdmad'])
    from .imb_algorithms.cpe import cpe  # noqa: F401  (registers IMB_ALGORITHMS['cpe'])
    from .imb_algorithms.semi import semi  # noqa: F401  (registers IMB_ALGORITHMS['semi'])

    nets.register(semilearn.nets)


def registries():
    """semilearn's ``(ALGORITHMS, IMB_ALGORITHMS)``, with the plugin registered."""
    register()
    from semilearn.core.utils import ALGORITHMS, IMB_ALGORITHMS

    return ALGORITHMS, IMB_ALGORITHMS
