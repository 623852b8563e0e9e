"""semi_usb: SeMi and ACR as plugins of USB (semilearn 0.3.2).

Importing this package does no work (no torch, no semilearn). The algorithms and networks
enter semilearn's registries through one explicit call, :func:`semi_usb.plugin.register`;
semilearn's runtime patches are applied by the trainer (:func:`semi_usb.compat.apply`).
"""
__version__ = "0.1.0"
