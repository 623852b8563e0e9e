"""The plugin's imbalanced algorithms, laid out as USB's ``semilearn/imb_algorithms``:
one package per method (``acr/``, ``semi/``, ``cpe/``, ``cdmad/``, ``simpro/``, ``bacon/``),
``fixmatch_base.py`` (the base class they share), ``backbone.py`` (networks around a USB
backbone) and ``state.py`` (their state protocol and DDP reductions). Importing this package registers nothing: :func:`semi_usb.plugin.register`
imports the algorithm modules, whose ``@IMB_ALGORITHMS.register`` decorators do it.
"""
