"""BaCon (Feng et al., AAAI 2024): ``bacon.py`` (the algorithm, ``IMB_ALGORITHMS['bacon']``),
``network.py`` (the auxiliary head and projection), ``losses.py`` (ABC's loss and the balanced
contrastive loss), ``feature_bank.py`` (the per-sample labels and projections, the class
centres), ``hooks.py``. See docs/method.md, "BaCon".

Light on purpose (no semilearn import here): :func:`semi_usb.plugin.register` imports
``bacon.py``, whose decorator registers the algorithm.
"""
