"""SeMi (Wang et al., ACM MM 2025): ``semi.py`` (the algorithm, ``IMB_ALGORITHMS['semi']``),
``memory_bank.py``, ``plce.py``, ``hard_examples.py``, ``hooks.py``. See docs/method.md,
"SeMi: memory bank", "SeMi: PLCE", "SeMi: OHEML", "SeMi: Embedding Align".

Light on purpose (no semilearn import here): :func:`semi_usb.plugin.register` imports
``semi.py``, whose decorator registers the algorithm.
"""
