"""CDMAD (Lee & Kim, CVPR 2024, "CDMAD: Class-Distribution-Mismatch-Aware Debiasing for
Class-Imbalanced Semi-Supervised Learning"): ``cdmad.py`` (the algorithm,
``IMB_ALGORITHMS['cdmad']``), ``debias.py`` (the bias image, the debiased network and the
formulas). See docs/method.md, "CDMAD".

Light on purpose (no semilearn import here): :func:`semi_usb.plugin.register` imports
``cdmad.py``, whose decorator registers the algorithm.
"""
