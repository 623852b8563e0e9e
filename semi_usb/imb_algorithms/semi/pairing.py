"""Which features SeMi pairs with each unlabeled image (``semi_feature_pairing``;
docs/deviations.md, deviation 1).

* ``aligned`` (default): each image's own weak and strong features (``ACR.forward_views``).
* ``released``: the slices that the authors' ``train_semi.py`` takes from its interleaved
  forward. The script forwards ``interleave(cat(x_lb, x_w, x_s, x_s1), k)`` (``k`` = rows
  over labeled rows) and then reads the weak features at rows ``[B, 2B)``, the strong ones at
  ``[2B, 4B)`` of the *interleaved* output without undoing the interleaving, so a "weak" row
  ``i`` holds the feature of row ``k i + 1`` of the concatenation: other images, and other
  views, than the pseudo-labels they are paired with. :func:`released_pairing` takes the same
  rows from the concatenation of this step's features, for the bank's push, the semantic
  label ``q`` and Embedding Align (the gradient flows to whichever rows are taken).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

FEATURE_PAIRINGS = ("aligned", "released")


def interleave(x: Tensor, size: int) -> Tensor:
    """The released script's ``interleave``: row ``j * (N / size) + i`` of the result is row
    ``size * i + j`` of ``x``."""
    s = list(x.shape)
    return x.reshape([-1, size] + s[1:]).transpose(0, 1).reshape([-1] + s[1:])


def released_pairing(feats_lb: Tensor, feats_w: Tensor, feats_s: Tensor) -> Tuple[Tensor, Tensor]:
    """The released script's weak and strong feature slices, as ``(feat_w, feat_s)`` with the
    shapes of ``feats_w`` (``B_u`` rows) and ``feats_s`` (every strong view, ``V B_u`` rows).

    The interleave's width is the number of rows over the labeled rows (``3 mu + 1`` in the
    script, with ``mu = B_u / B``); with the script's ``mu = 1`` the slices are its
    ``feat_u_w``, ``feat_u_s``, ``feat_u_s1`` (and ``feat_u_ss``, both strong ones).
    """
    n_lb, n_ulb = feats_lb.shape[0], feats_w.shape[0]
    feats = torch.cat((feats_lb, feats_w, feats_s))
    if feats.shape[0] % n_lb:
        raise ValueError(f"released feature pairing: {feats.shape[0]} rows are not a multiple of the "
                         f"{n_lb} labeled rows (the script's interleave needs an integer uratio)")
    mixed = interleave(feats, feats.shape[0] // n_lb)
    return mixed[n_lb:n_lb + n_ulb], mixed[n_lb + n_ulb:]
