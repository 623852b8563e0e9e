"""The plugin's imbalanced algorithms, laid out as USB's ``semilearn/imb_algorithms``:
``acr/`` and ``semi/`` (one package per method), and ``state.py`` (their state protocol and
DDP reductions). Importing this package registers nothing: :func:`semi_usb.plugin.register`
imports the algorithm modules, whose ``@IMB_ALGORITHMS.register`` decorators do it.
"""
