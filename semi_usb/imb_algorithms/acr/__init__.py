"""ACR (Wei & Gan, CVPR 2023): ``acr.py`` (the algorithm, ``IMB_ALGORITHMS['acr']``),
``balanced_head.py``, ``distribution_estimate.py``, ``hooks.py``. See docs/method.md, "ACR".

Light on purpose (no semilearn import here): :func:`semi_usb.plugin.register` imports
``acr.py``, whose decorator registers the algorithm.
"""
