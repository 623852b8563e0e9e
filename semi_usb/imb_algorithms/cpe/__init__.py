"""CPE (Ma et al., AAAI 2024, "Three Heads Are Better Than One: Complementary Experts for
Long-Tailed Semi-Supervised Learning"): ``cpe.py`` (the algorithm, ``IMB_ALGORITHMS['cpe']``),
``experts.py`` (the three experts and the class-wise batch normalisation), ``losses.py`` (their
formulas), ``priors.py`` (the pseudo-label class distributions it logs). See docs/method.md, "CPE".

Light on purpose (no semilearn import here): :func:`semi_usb.plugin.register` imports
``cpe.py``, whose decorator registers the algorithm.
"""
