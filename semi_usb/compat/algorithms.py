"""USB's own imbalanced algorithms, fixed where they lose state or fail on numpy 2, and
declared the way the plugin's algorithms declare themselves. Each patch names the semilearn
line it works around.
"""
from __future__ import annotations

import math
import types

from ..imb_algorithms.device import model_device


class _NumpyWithMath(types.ModuleType):
    """numpy as CReST expects it: numpy 2 removed ``np.math``."""

    def __init__(self, numpy_module):
        super().__init__("numpy")
        self._numpy = numpy_module
        self.math = math

    def __getattr__(self, name):
        return getattr(self._numpy, name)


def _with_daso_state(get_save_dict):
    # Wraps DASO.get_save_dict (semilearn/imb_algorithms/daso/daso.py), which leaves out the
    # feature queue (its `save_dict['queue_bank']` line is commented out) and `probs_sim`,
    # the previous step's prototype label that DASOPseudoLabelingHook.gen_ulb_targets reads.
    # Without them a run resumed after pre-training fails on the missing attribute, and its
    # prototypes would restart from an empty queue.
    def wrapped(self):
        save_dict = get_save_dict(self)
        save_dict["semi_usb_daso"] = {"queue": {int(c): f.clone() for c, f in self.queue.bank.items()},
                                      "probs_sim": getattr(self, "probs_sim", None)}
        return save_dict

    return wrapped


def _with_daso_restore(load_model):
    # Wraps DASO.load_model: restore what _with_daso_state saved (older checkpoints lack it).
    def wrapped(self, load_path):
        checkpoint = load_model(self, load_path)
        state = checkpoint.get("semi_usb_daso")
        if state is not None:
            self.queue.bank.clear()
            self.queue.bank.update(state["queue"])
            if state["probs_sim"] is not None:
                self.probs_sim = state["probs_sim"].to(model_device(self))
        return checkpoint

    return wrapped


def declare() -> None:
    """``ABC.eval_head``: USB's ABC predicts with its auxiliary head
    (semilearn/imb_algorithms/abc/abc.py:114-115, ``evaluate`` with ``out_key='logits_aux'``),
    which ``summary.json`` and the test features name and use."""
    from semilearn.imb_algorithms.abc.abc import ABC

    ABC.eval_head = ("aux", "logits_aux")


def install() -> None:
    """Patch DASO's checkpoint (semilearn/imb_algorithms/daso/daso.py) and CReST's numpy."""
    from semilearn.imb_algorithms.daso.daso import DASO

    DASO.get_save_dict = _with_daso_state(DASO.get_save_dict)
    DASO.load_model = _with_daso_restore(DASO.load_model)
    # semilearn/imb_algorithms/crest/crest.py calls np.math.pow (gone in numpy 2). Give that
    # module, and only it, a numpy that still has .math.
    try:
        from semilearn.imb_algorithms.crest import crest

        if not hasattr(crest.np, "math"):
            crest.np = _NumpyWithMath(crest.np)
    except ImportError:  # pragma: no cover - CReST failed to import in semilearn itself
        pass
