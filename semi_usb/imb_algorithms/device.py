"""Where an algorithm runs: the device of its model, and which process is the main one.

One definition of each, for the algorithms' hooks and for the trainer around them. The
main process writes the run folder (checkpoints, logs, the evaluation history, the summary)
and talks on the console: the only process without DDP, else the first rank of each node,
USB's rule (``rank % ngpus_per_node == 0``, semilearn/core/hooks/checkpoint.py and
logging.py); a machine without GPUs counts as one per process.
"""
from __future__ import annotations

import torch


def model_device(algorithm) -> torch.device:
    """The device that the algorithm's model lives on (CPU, one GPU or this rank's GPU)."""
    return next(algorithm.model.parameters()).device


def is_main_rank(rank: int, ngpus_per_node: int) -> bool:
    """Whether DDP rank ``rank`` is the first of its node."""
    return rank % max(ngpus_per_node, 1) == 0


def is_main_process(algorithm) -> bool:
    """Whether this process is the main one of the algorithm's run."""
    return not algorithm.distributed or is_main_rank(algorithm.rank, algorithm.ngpus_per_node)
