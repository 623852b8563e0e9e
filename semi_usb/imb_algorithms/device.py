"""Where an algorithm runs: its model (unwrapped from DDP), the model's device, and which
process is the main one.

One definition of each, for the algorithms' hooks and for the trainer around them. The
main process writes the run folder (checkpoints, logs, the evaluation history, the summary)
and talks on the console: the only process without DDP, else the first rank of each node,
USB's rule (``rank % ngpus_per_node == 0``, semilearn/core/hooks/checkpoint.py and
logging.py); a machine without GPUs counts as one per process, which is right because
``semilearn train`` refuses DDP there (``semi_usb.ranges.check_gpu``).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DataParallel / DistributedDataParallel wrapper, or itself."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


def model_device(algorithm) -> torch.device:
    """The device that the algorithm's model lives on (CPU, one GPU or this rank's GPU)."""
    return next(algorithm.model.parameters()).device


def is_main_rank(rank: int, ngpus_per_node: int) -> bool:
    """Whether DDP rank ``rank`` is the first of its node."""
    return rank % max(ngpus_per_node, 1) == 0


def is_main_process(algorithm) -> bool:
    """Whether this process is the main one of the algorithm's run."""
    return not algorithm.distributed or is_main_rank(algorithm.rank, algorithm.ngpus_per_node)
