"""SimPro (Du et al., ICML 2024): ``simpro.py`` (the algorithm, ``IMB_ALGORITHMS['simpro']``),
``estimate.py`` (the class-marginal estimates and the losses), ``hooks.py``. See
docs/method.md, "SimPro".

Light on purpose (no semilearn import here): :func:`semi_usb.plugin.register` imports
``simpro.py``, whose decorator registers the algorithm.
"""
