"""semi_usb: SeMi and ACR as plugins of USB (semilearn 0.3.2).

Importing this package registers the plugin's algorithms in semilearn's registries
(``IMB_ALGORITHMS['acr']``, ``IMB_ALGORITHMS['semi']``) and its networks in
``semilearn.nets``. Runtime patches of semilearn are applied by the trainer
(``semi_usb.compat.apply``), not here.
"""
__version__ = "0.1.0"

from .compat import import_semilearn

import_semilearn()

import semilearn.nets as _usb_nets  # noqa: E402

from . import nets  # noqa: E402

nets.register(_usb_nets)

from . import acr, semi  # noqa: E402,F401  (registers IMB_ALGORITHMS['acr'], ['semi'])
