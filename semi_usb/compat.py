"""The one place where semi_usb adapts semilearn 0.3.2.

semilearn is used as installed; nothing in site-packages is edited. Two entry points:

* :func:`import_semilearn` makes ``import semilearn`` work where its optional experiment
  trackers (aim, wandb) are not installed. It is called by :func:`semi_usb.plugin.register`,
  which must import semilearn to register the algorithms.
* :func:`declare_attributes` gives two of semilearn's classes the attributes that the
  plugin's own algorithms declare (the head they predict with, whether their step takes two
  strong views); :func:`semi_usb.plugin.register` calls it.
* :func:`apply` installs the runtime patches below. The trainer (``semi_usb.runner``) calls
  it explicitly; importing semi_usb does not.

Every patch names the semilearn line it works around. Patches replace attributes of
semilearn's own classes and modules only (never torch or numpy globals), and each is
idempotent.
"""
from __future__ import annotations

import importlib.util
import math
import os
import pickle
import sys
import tempfile
import time
import types
import warnings
from inspect import signature
from typing import Any, Callable

import torch

from .checkpoint import CheckpointError, atomic_torch_save
from .errors import DataError
from .imb_algorithms.device import model_device
from .metrics import evaluate_model
from .resume import loop_state
from .resume import train as resumable_train

_PATCHED = "_semi_usb_patched"


def _stub_tracker(name: str) -> types.ModuleType:
    """A placeholder for an optional tracker module that fails only when it is used."""
    module = types.ModuleType(name)

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ImportError(
            f"{name} is not installed: install it (pip install {name}) or leave use_{name}=False"
        )

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    module.__semi_usb_stub__ = True  # type: ignore[attr-defined]
    return module


def import_semilearn() -> types.ModuleType:
    """Import semilearn even where aim or wandb are missing.

    semilearn/core/hooks/aim.py and wandb.py do ``import aim`` / ``import wandb`` at module
    level, so ``import semilearn`` fails without them although they are only used when
    ``use_aim`` / ``use_wandb`` are set. Only when a tracker is really absent, a stub that
    raises on first use stands in for it.
    """
    for name in ("aim", "wandb"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = _stub_tracker(name)
    with warnings.catch_warnings():
        # semilearn/nets/vit imports timm.models.layers, deprecated in timm >= 0.9.
        warnings.filterwarnings("ignore", message="Importing from timm.models.layers is deprecated")
        import semilearn

    return semilearn


def declare_attributes() -> None:
    """What the plugin reads from an algorithm class, for two of semilearn's (idempotent).

    * ``ABC.eval_head``: USB's ABC predicts with its auxiliary head
      (semilearn/imb_algorithms/abc/abc.py:114-115, ``evaluate`` with ``out_key='logits_aux'``),
      which ``summary.json`` and the test features name and use.
    * ``FixMatch.two_strong_views``: FixMatch's own step (semilearn/algorithms/fixmatch/
      fixmatch.py, ``train_step(x_lb, y_lb, x_ulb_w, x_ulb_s)``) takes a second strong view
      through :func:`_stack_views_for_base_step` below.
    """
    from semilearn.algorithms.fixmatch import FixMatch
    from semilearn.imb_algorithms.abc.abc import ABC

    ABC.eval_head = ("aux", "logits_aux")
    FixMatch.two_strong_views = True


def _to_device(var: Any, device: torch.device) -> Any:
    if isinstance(var, dict):
        return {k: _to_device(v, device) for k, v in var.items()}
    if isinstance(var, torch.Tensor):
        return var.to(device, non_blocking=True)
    return var


def _process_batch(self, input_args=None, **kwargs):
    # Replaces AlgorithmBase.process_batch (semilearn/core/algorithmbase.py), whose
    # `var.cuda(self.gpu)` fails without CUDA. Same filtering by the train_step signature;
    # tensors go to the model's device instead.
    if input_args is None:
        input_args = list(signature(self.train_step).parameters.keys())
    device = model_device(self)
    kwargs = _stack_views_for_base_step(kwargs, input_args)
    return {
        arg: _to_device(var, device)
        for arg, var in kwargs.items()
        if arg in input_args and var is not None
    }


def _stack_views_for_base_step(batch: dict, input_args) -> dict:
    # Two strong views for a step that takes one (FixMatch.train_step, semilearn/algorithms/
    # fixmatch/fixmatch.py): both views in L_u over 2 x B_u rows, the weak view repeated so that
    # its pseudo-labels and masks are repeated (docs/protocols.md, "Strong views").
    if "x_ulb_s_1" in batch and "x_ulb_s_1" not in input_args and "x_ulb_s" in batch:
        batch = dict(batch)
        second = batch.pop("x_ulb_s_1")
        batch["x_ulb_w"] = torch.cat((batch["x_ulb_w"], batch["x_ulb_w"]))
        batch["x_ulb_s"] = torch.cat((batch["x_ulb_s"], second))
    return batch


def _evaluate(self, eval_dest="eval", out_key="logits", return_logits=False):
    # Replaces AlgorithmBase.evaluate, whose `x.cuda(self.gpu)` fails without CUDA. Keeps
    # USB's keys (eval/loss, eval/top-1-acc, eval/balanced_acc, ...) and adds per-class
    # accuracy and the confusion matrix (counts), which the summary and reports need.
    self.model.eval()
    self.ema.apply_shadow()
    try:
        result = evaluate_model(
            self.model, self.loader_dict[eval_dest], model_device(self), out_key=out_key,
            num_classes=self.num_classes, keep_logits=return_logits,
        )
    finally:
        self.ema.restore()
        self.model.train()
    self.print_fn("confusion matrix:\n" + str(result.confusion_normalized()))
    eval_dict = {f"{eval_dest}/{k}": v for k, v in result.usb_metrics().items()}
    self.last_eval = result
    if return_logits:
        eval_dict[eval_dest + "/logits"] = result.logits
    return eval_dict


def _save_model(self, save_name, save_path):
    # Replaces AlgorithmBase.save_model, whose plain torch.save leaves a truncated file if
    # the process dies while writing. Write to a temporary file, fsync, then rename.
    os.makedirs(save_path, exist_ok=True)
    save_filename = os.path.join(save_path, save_name)
    try:
        atomic_torch_save(self.get_save_dict(), save_filename)
    except OSError as exc:  # full disk, read-only folder: the previous checkpoint is untouched
        raise CheckpointError(f"cannot write checkpoint {save_filename} ({exc.strerror or exc}): free space "
                              f"or make {save_path} writable, then resume (--resume True); the previous "
                              "checkpoint is intact") from None
    self.print_fn(f"model saved: {save_filename}")


def _with_loop_state(get_save_dict):
    # Wraps AlgorithmBase.get_save_dict, which stores `it + 1` and `epoch + 1` (right only
    # inside a step, and it skips the rest of the epoch on resume): store the completed
    # iterations, the epoch, the position in it and the RNG states (semi_usb.resume).
    def wrapped(self):
        save_dict = get_save_dict(self)
        state = loop_state(self)
        save_dict.update(it=state.pop("it"), epoch=state["epoch"], semi_usb_loop=state)
        return save_dict

    return wrapped


def _with_resume_state(load_model):
    # Wraps AlgorithmBase.load_model: keep the loop position for semi_usb.resume.train.
    def wrapped(self, load_path):
        checkpoint = load_model(self, load_path)
        self.semi_usb_resume = checkpoint.get("semi_usb_loop")
        return checkpoint

    return wrapped


class _WallClockTimerHook:
    """Replaces semilearn's TimerHook (semilearn/core/hooks/timer.py).

    USB's hook records ``torch.cuda.Event`` objects, which fail without CUDA, and sets
    ``algorithm.start_run`` so that ParamUpdateHook calls ``torch.cuda.synchronize()`` twice
    per step. This version measures the data-loading wait with a host clock and forces no
    device synchronisation; it logs the same keys (``lr``, ``train/prefetch_time``).
    """

    @staticmethod
    def before_run(self, algorithm):
        algorithm.semi_usb_batch_clock = time.perf_counter()

    @staticmethod
    def before_train_step(self, algorithm):
        algorithm.semi_usb_prefetch_time = time.perf_counter() - algorithm.semi_usb_batch_clock

    @staticmethod
    def after_train_step(self, algorithm):
        algorithm.log_dict["lr"] = algorithm.optimizer.param_groups[-1]["lr"]
        algorithm.log_dict["train/prefetch_time"] = algorithm.semi_usb_prefetch_time
        algorithm.semi_usb_batch_clock = time.perf_counter()


class _NumpyWithMath(types.ModuleType):
    """numpy as CReST expects it: numpy 2 removed ``np.math``."""

    def __init__(self, numpy_module):
        super().__init__("numpy")
        self._numpy = numpy_module
        self.math = math

    def __getattr__(self, name):
        return getattr(self._numpy, name)


def _with_throwaway_split_dump(dataset_utils: types.ModuleType) -> Callable:
    # Wraps semilearn/datasets/utils.py's sample_labeled_unlabeled_data, which np.saves the
    # split's indices under `base_dir` (line 63: os.makedirs(<site-packages>/data/<dataset>/
    # labeled_idx)): site-packages or any fixed folder may be read-only, and a command that
    # fails later would leave them behind. The split is drawn again from the seed on every
    # run (split_ssl_data passes load_exist=False), so the files go to a temporary folder,
    # removed when the split is made. (STL-10's loader passes load_exist=True; with no file
    # left to find it draws its split from the seed, as on a first run.)
    sample = dataset_utils.sample_labeled_unlabeled_data

    def wrapped(*args, **kwargs):
        with tempfile.TemporaryDirectory(prefix="semi_usb_split_") as tmp:
            saved, dataset_utils.base_dir = dataset_utils.base_dir, tmp
            try:
                return sample(*args, **kwargs)
            finally:
                dataset_utils.base_dir = saved

    return wrapped


def _with_ulb_distribution(sample: Callable) -> Callable:
    # Wraps semilearn/datasets/utils.py's sample_labeled_unlabeled_data, whose unlabeled
    # counts (lines 84-94) are make_imbalance_data's, consistent or reversed only. For
    # ulb_distribution middle / head-tail (semi_usb.ulb_distribution) it draws the split as
    # USB does with every remaining image unlabeled (ulb_num_labels None, ratio 1: the same
    # per-class shuffles), then keeps the first counts[c] unlabeled images of each class c:
    # the images USB's own slice would take with those counts.
    from .datasets import unlabeled_per_class
    from .ulb_distribution import keep_per_class

    def wrapped(args, data, target, num_classes, lb_num_labels, ulb_num_labels=None,
                lb_imbalance_ratio=1.0, ulb_imbalance_ratio=1.0, load_exist=True):
        dist = getattr(args, "ulb_distribution", "usb")
        if dist == "usb" or ulb_num_labels in (None, "None"):
            return sample(args, data, target, num_classes, lb_num_labels, ulb_num_labels,
                          lb_imbalance_ratio, ulb_imbalance_ratio, load_exist)
        lb_idx, rest = sample(args, data, target, num_classes, lb_num_labels, None,
                              lb_imbalance_ratio, 1.0, load_exist)
        counts = unlabeled_per_class(int(ulb_num_labels), num_classes, ulb_imbalance_ratio, dist)
        return lb_idx, keep_per_class(rest, target, counts)

    return wrapped


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


# --------------------------------------------------------------------------- protocol patches

def _with_lr_schedule(set_optimizer: Callable) -> Callable:
    """``set_optimizer`` whose scheduler follows ``args.lr_schedule`` (docs/protocols.md,
    "Learning-rate schedule").

    Wraps AlgorithmBase.set_optimizer (semilearn/core/algorithmbase.py:216-232, USB's 7/16
    cosine) and ImbAlgorithmBase.set_optimizer (:591-613, ``scheduler = None`` for CIFAR/STL),
    which every algorithm reaches, DASO and ABC included (ABC, CReST, CoSSL, TRAS call it again
    after building their own model). ``usb`` (or no key: USB's own train.py) keeps semilearn's
    choice; the optimizer's parameter groups are semilearn's in every case.
    """
    def wrapped(self):
        from semilearn.core.utils import get_cosine_schedule_with_warmup

        optimizer, scheduler = set_optimizer(self)
        schedule = getattr(self.args, "lr_schedule", "usb")
        if schedule == "cosine":
            scheduler = get_cosine_schedule_with_warmup(optimizer, self.num_train_iter,
                                                        num_warmup_steps=self.args.num_warmup_iter)
        elif schedule == "constant":
            scheduler = None
        return optimizer, scheduler

    return wrapped


def _with_strong_views(set_dataset: Callable) -> Callable:
    # Wraps AlgorithmBase.set_dataset (semilearn/core/algorithmbase.py:129-153): tell the
    # unlabeled dataset how many strong views to return (args.num_strong_views; USB's own
    # train.py has no such key: one view).
    def wrapped(self, *args, **kwargs):
        dataset_dict = set_dataset(self, *args, **kwargs)
        ulb = dataset_dict.get("train_ulb") if dataset_dict else None
        if ulb is not None:
            ulb.num_strong_views = getattr(self.args, "num_strong_views", 1)
        return dataset_dict

    return wrapped


def _with_second_strong_view(getitem: Callable) -> Callable:
    # Wraps BasicDataset.__getitem__ (semilearn/datasets/cv_datasets/datasetbase.py:72-116),
    # which gives two strong views (x_ulb_s_0, x_ulb_s_1) only to algorithms named comatch or
    # remixmatch: with num_strong_views 2 the unlabeled item gets a second, independent
    # RandAugment view of the same image as x_ulb_s_1 beside x_ulb_s.
    def wrapped(self, idx):
        item = getitem(self, idx)
        if getattr(self, "num_strong_views", 1) == 2 and "x_ulb_s" in item:
            from PIL import Image
            import numpy as np

            img, _ = self.__sample__(idx)
            item["x_ulb_s_1"] = self.strong_transform(Image.fromarray(img) if isinstance(img, np.ndarray) else img)
        return item

    return wrapped


# --------------------------------------------------------------------------- dataset patches

def _offline_cifar(base: type) -> type:
    """torchvision's CIFAR class, reading files semilearn expects without the md5 check.

    Works around semilearn/datasets/cv_datasets/cifar.py:27 (and :106), ``dset =
    getattr(torchvision.datasets, name.upper())`` with ``download=True``: torchvision
    verifies the md5 of each pickle and downloads when it does not match, so CIFAR imported
    from images (same layout, other bytes) would trigger a download.
    """
    from .datasets import missing_message

    class OfflineCIFAR(base):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            folder = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(folder, f)) for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        def download(self) -> None:
            if self._check_integrity():
                return
            if os.environ.get("SEMI_USB_OFFLINE", "") not in ("", "0"):
                raise DataError(missing_message(base.__name__.lower(), self.root))
            try:
                super().download()
            except Exception:
                raise DataError(missing_message(base.__name__.lower(), self.root)) from None

    OfflineCIFAR.__name__ = base.__name__
    return OfflineCIFAR


def _with_plugin_datasets(usb_get_dataset: Callable) -> Callable:
    """semilearn's ``get_dataset`` extended with the plugin datasets and offline checks.

    Works around semilearn/core/utils/build.py:60-105, whose if/elif over dataset names
    knows no image folders (``else: return None``) and, offline, lets torchvision try to
    download; semilearn/core/algorithmbase.py:30 imports it, :135 calls it.
    """
    from .datasets import PLUGIN_DATASETS, check_usb_data_present

    def get_dataset(args, algorithm, dataset, num_labels, num_classes, data_dir="./data", include_lb_to_ulb=True):
        if dataset in PLUGIN_DATASETS:
            lb, ulb, ev = PLUGIN_DATASETS[dataset](args, algorithm, data_dir)
            return {"train_lb": lb, "train_ulb": ulb, "eval": ev, "test": None}
        check_usb_data_present(dataset, data_dir)
        return usb_get_dataset(args, algorithm, dataset, num_labels, num_classes, data_dir, include_lb_to_ulb)

    get_dataset.semi_usb_wrapped = usb_get_dataset  # type: ignore[attr-defined]
    return get_dataset


def _checked_split(usb_split: Callable) -> Callable:
    """semilearn's ``split_ssl_data`` that first refuses a split asking a class for more
    images than it has.

    Works around semilearn/datasets/utils.py:102-106 (sample_labeled_unlabeled_data), whose
    ``idx[:lb_samples_per_class[c]]`` slices silently return fewer images than asked for;
    semilearn/datasets/cv_datasets/cifar.py:13 imports split_ssl_data, :57 calls it.
    """
    import numpy as np

    from .datasets import check_split

    def split_ssl_data(args, data, targets, num_classes, lb_num_labels, ulb_num_labels=None,
                       lb_imbalance_ratio=1.0, ulb_imbalance_ratio=1.0, *rest, **kwargs):
        if num_classes != len(np.unique(np.asarray(targets))):
            raise DataError(f"{args.dataset} has {len(np.unique(np.asarray(targets)))} classes but num_classes={num_classes}")
        check_split(np.bincount(np.asarray(targets), minlength=num_classes), lb_num_labels, ulb_num_labels,
                    lb_imbalance_ratio, ulb_imbalance_ratio, args.dataset, getattr(args, "ulb_distribution", "usb"))
        return usb_split(args, data, targets, num_classes, lb_num_labels, ulb_num_labels,
                         lb_imbalance_ratio, ulb_imbalance_ratio, *rest, **kwargs)

    return split_ssl_data


def _patch_cifar(cifar_module) -> None:
    """Point semilearn's CIFAR loader (semilearn/datasets/cv_datasets/cifar.py) at the
    offline classes and the checked split."""
    import torchvision

    cifar_module.split_ssl_data = _checked_split(cifar_module.split_ssl_data)
    cifar_module.torchvision = types.SimpleNamespace(datasets=types.SimpleNamespace(
        CIFAR10=_offline_cifar(torchvision.datasets.CIFAR10),
        CIFAR100=_offline_cifar(torchvision.datasets.CIFAR100)))


def apply() -> None:
    """Install the runtime patches (idempotent). Called by the trainer, not on import."""
    import_semilearn()
    from semilearn.core import algorithmbase
    from semilearn.core.hooks import timer
    import semilearn.datasets.utils as dataset_utils

    if getattr(algorithmbase.AlgorithmBase, _PATCHED, False):
        return

    base = algorithmbase.AlgorithmBase
    base.process_batch = _process_batch
    base.evaluate = _evaluate
    base.save_model = _save_model
    # AlgorithmBase.train restarts a resumed run at the next epoch: see semi_usb.resume.
    base.train = resumable_train
    base.get_save_dict = _with_loop_state(base.get_save_dict)
    base.load_model = _with_resume_state(base.load_model)

    from semilearn.imb_algorithms.daso.daso import DASO

    DASO.get_save_dict = _with_daso_state(DASO.get_save_dict)
    DASO.load_model = _with_daso_restore(DASO.load_model)

    # lr_schedule and num_strong_views (docs/protocols.md): see the wrappers' comments.
    from semilearn.core.algorithmbase import ImbAlgorithmBase
    from semilearn.datasets.cv_datasets.datasetbase import BasicDataset

    for cls in (base, ImbAlgorithmBase):
        cls.set_optimizer = _with_lr_schedule(cls.set_optimizer)
    base.set_dataset = _with_strong_views(base.set_dataset)
    BasicDataset.__getitem__ = _with_second_strong_view(BasicDataset.__getitem__)

    for stage in ("before_run", "before_train_step", "after_train_step"):
        setattr(timer.TimerHook, stage, getattr(_WallClockTimerHook, stage))

    dataset_utils.sample_labeled_unlabeled_data = _with_ulb_distribution(_with_throwaway_split_dump(dataset_utils))
    from semilearn.datasets.cv_datasets import stl10  # imported the function by name

    stl10.sample_labeled_unlabeled_data = dataset_utils.sample_labeled_unlabeled_data

    # semilearn/imb_algorithms/crest/crest.py calls np.math.pow (gone in numpy 2). Give that
    # module, and only it, a numpy that still has .math.
    try:
        from semilearn.imb_algorithms.crest import crest

        if not hasattr(crest.np, "math"):
            crest.np = _NumpyWithMath(crest.np)
    except ImportError:  # pragma: no cover - CReST failed to import in semilearn itself
        pass

    # semilearn/core/algorithmbase.py:30 imports get_dataset from core/utils/build.py, whose
    # if/elif knows no image folders and, offline, lets torchvision try to download.
    # The wrapper adds the plugin datasets (digits, imagefolder) and one-line errors.
    from semilearn.datasets.cv_datasets import cifar

    algorithmbase.get_dataset = _with_plugin_datasets(algorithmbase.get_dataset)
    # semilearn/datasets/cv_datasets/cifar.py:27: getattr(torchvision.datasets, name.upper())
    # verifies the md5 of each pickle, so CIFAR imported from images triggers a download;
    # cifar.py:57: split_ssl_data silently gives a class fewer images than asked for.
    _patch_cifar(cifar)

    setattr(base, _PATCHED, True)
