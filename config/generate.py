#!/usr/bin/env python
"""Generate the class-imbalanced (``classic_cv_imb``) config tree side by side with USB's.

Usage::

    python config/generate.py [--tree classic_cv_imb|semi_paper|simpro_paper] [--out DIR] [--check]

Three trees (``TREES``): ``classic_cv_imb`` (USB's protocol), ``semi_paper`` (SeMi's and
ACR's authors' protocol, see "The semi_paper tree" below) and ``simpro_paper`` (SimPro's
authors' protocol); without ``--tree`` all.

Without ``--check`` the script writes every file of the tree (only files whose text changed
are rewritten) and deletes stale ``*.yaml`` files inside the method folders it owns.
With ``--check`` it writes nothing and exits 1 if any file is missing, differs from what
would be generated, or is stale, so CI can check that the tree is up to date.
The plugin's algorithms (``acr``, ``semi``, ``cpe``, ``cdmad``, ``simpro``, ``bacon``) write
their keys with the defaults of their own ``SSL_Argument`` declarations
(``semi_usb/imb_algorithms/<name>/<name>.py``), so a default is declared once; for that the
script imports ``semi_usb`` from this repository, and through it semilearn.

Layout and naming (USB's)::

    <out>/<method>/<method>_<dataset>_lb<N1>_<gamma_l>_ulb<M1|None>_<gamma_u>_<seed>.yaml

e.g. ``fixmatch_acr/fixmatch_acr_cifar10_lb1500_100_ulb3000_-100_0.yaml``. gamma_u is written
as given in the table: consistent ``100``, uniform ``1`` (CIFAR) or ``1.0`` (STL-10, as USB
names it: ``ulbNone_1.0``), reversed ``-100``. ``save_name`` is always the file stem.

Adding a setting
----------------
Add one line to ``SETTINGS`` below: ``S(dataset, N1, gamma_l, M1, gamma_u)`` (``M1=None`` when
the unlabeled set is the dataset's own, as for STL-10 and ImageNet-127; an optional
``img_size=`` makes an image-size variant). Every method in ``METHODS`` gets it for every
seed in ``SEEDS``. A new dataset also needs an entry in ``DATASETS`` (and, where a method's
defaults depend on the dataset, in that method's ``per_dataset``). Then run the script and
commit the tree.

Choices made here
-----------------
* ImageNet-127: USB's configs use ``img_size: 112`` and are named ``imagenet127_lb...``.
  The 32 px and 64 px variants used in the papers (ACR, DASO, CoSSL) are generated too,
  named with the size after the dataset, ``imagenet127_32_lb...`` / ``imagenet127_64_lb...``;
  only ``img_size`` differs (``dataset: imagenet127``, resnet50, batch 256, lr 0.1,
  500,000 iterations, as USB's 112 px files). The data folder is expected to hold images
  already downsampled to that size (USB's transforms resize anyway). As in USB,
  ``lb_imb_ratio``/``ulb_imb_ratio: 286`` and ``ulb_num_labels: None`` only record the natural
  tail: USB's ImageNet loader ignores them and labels ``num_labels / 1,281,167`` of the
  training set (lb128101 ~ 10%, lb12810 ~ 1%).
* SeMi's memory-bank decay step (``semi_decay_step``): 100 for CIFAR-10 and 200 for
  CIFAR-100 (the authors' values); STL-10 (10 classes, like CIFAR-10) uses 100 and
  ImageNet-127 (many classes, like CIFAR-100) uses 200.
* SeMi's warm-up (``semi_warmup_iter``) is 3000 iterations for every dataset: the authors'
  script starts PLCE, OHEML and Embedding Align after 6 epochs of 500 iterations (its
  ``epoch > est_epoch``, ``est_epoch`` 5), i.e. after 3000 steps, whatever the epoch length.
  It is not rescaled to USB's 1024-iteration epochs (6144) nor to ImageNet-127's budget:
  the authors give no other value.
* ACR's estimate: ``acr_u_momentum`` 0.99 (ACR's run commands) and ``acr_class_vector``
  ``acr_code`` (its released code), for ``fixmatch_acr`` and SeMi's frame alike.
* CPE's class-wise batch-norm cuts (``cpe_cut1``/``cpe_cut2``, the first class index routed
  to the medium / tail branch): 2/4 for CIFAR-10 and STL-10 and 35/70 for CIFAR-100, as in the
  authors' configs (``config/classic_cv_imb/fixmatch_cpe/`` of their fork); ImageNet-127, for
  which they give none, gets CIFAR-100's fractions of the classes (44/89 of 127). CPE's
  network is USB's ``wrn_28_2`` (or the dataset's): the three batch-norm branches and the two
  extra experts are added by the algorithm, so the authors' ``wrn_28_2_cbn`` is not a separate
  network here.
* CDMAD's keys are the authors' FixMatch script's (``fixmatchcdmad.py``) for every dataset:
  soft, unthresholded pseudo-labels (``cdmad_hard_label: False``, ``cdmad_p_cutoff: 0.0``;
  FixMatch's ``p_cutoff``/``hard_label``/``T`` in the same file are not read by CDMAD), the
  bias image of ones, and debiasing from iteration 50,500 (their ``epoch > 100`` with
  500-iteration epochs), not rescaled to USB's epochs or to ImageNet-127's budget.
* The authors' threshold for SeMi (``p_cutoff: 0.7``; USB's protocol keeps 0.95) is the
  method variant ``fixmatch_semi_pc0.7``: its own folder
  ``<out>/fixmatch_semi_pc0.7/fixmatch_semi_pc0.7_<setting>_<seed>.yaml``, identical to the
  ``fixmatch_semi`` file except for ``p_cutoff``, ``save_name`` and ``load_path``.
  The seed stays the last name field, and the runs get their own ``save_dir`` entries.
* DASO's ``daso_T_dist`` is 1.5 for CIFAR-10 and 0.3 elsewhere, as in USB. CIFAR-100 keeps
  USB's ``wrn_28_2`` and ``weight_decay: 0.0005`` (some papers use wrn_28_8 / 0.001).
* ``use_wandb: False`` appears only in the ImageNet-127 files, as in USB's.

* SimPro (``fixmatch_simpro``): ``simpro_tau`` 2.0 and ``p_cutoff`` 0.95 on CIFAR-10 and
  STL-10, ``simpro_tau`` 1.0 and ``p_cutoff`` 0.2 on CIFAR-100 and ImageNet-127 (the authors'
  run script); ``simpro_ema_u`` 0.9; ``simpro_scale_ratio`` 0 (computed from the split).

* BaCon (``fixmatch_bacon``): the values of its authors' release for every dataset (their
  configs set only ABC's two keys; the rest is in their code): projection width 16, the
  contrastive loss from half of the iterations (their 150,000 of 300,000), ``T`` 0.1, ``eps``
  0.0005, negative weight 64, top-3 reliable negatives, thresholds 0.98 (contrastive rows) and
  0.95 on the auxiliary logits (frequency estimate). The authors trained in USB with USB's
  schedule and one strong view, at 300,000 iterations: there is no separate tree for them.

The simpro_paper tree
---------------------
``config/simpro_paper/fixmatch_simpro/``: SimPro in its authors' protocol (``SIMPRO_PAPER``,
from ``sh/SimPro.sh`` of LeapLabTHU/SimPro): cosine learning rate 0.17, ``uratio: 8``
(STL-10: 16) with two strong views, 43,000 iterations as 86 epochs of 500, an evaluation
every 500, the labeled images kept out of the unlabeled set; CIFAR-10-LT (500, 4000) at
gamma 150 and 100, CIFAR-100-LT (50, 400) at gamma 20 and 10 (consistent, uniform,
reversed, and the authors' middle and head-tail unlabeled distributions, ``ulb_distribution``,
named with a ``_middle`` / ``_head-tail`` suffix), STL-10-LT N1 = 450 at gamma 10 and 20. The
authors' ImageNet-127/1k splits are not generated.

The semi_paper tree
-------------------
``config/semi_paper/``: fixmatch, fixmatch_acr, fixmatch_semi and fixmatch_semi_pc0.7 on the
CIFAR-10-LT and CIFAR-100-LT settings, in the authors' protocol (``SEMI_PAPER``): cosine
learning rate for every method (``lr_schedule: cosine``), ``uratio: 1`` with two strong views
(``num_strong_views: 2``), the labeled images inside the unlabeled set
(``include_lb_to_ulb: True``), 500 epochs x 500 iterations with evaluation every 500, SeMi's
warm-up 3,000 iterations (6 epochs). Everything else is the classic tree's.

Deliberate changes from USB's template
--------------------------------------
* ``resume: True`` and ``load_path: .../latest_model.pth`` are kept: our runner resumes an
  existing run instead of deleting it.
* USB's ``clip: 0.0`` is dropped: it is not an argument anywhere in semilearn (ignored); the
  real key, ``clip_grad: 0.0``, is written in its place.
* ``dist_url`` is omitted: USB gives every file a fixed port; our runner picks a free one.
* ``gpu: None`` and ``multiprocessing_distributed: True`` are kept exactly as USB writes
  them (``None`` loads as the string ``'None'``, which the runner handles, like USB's
  ``train.py``); likewise ``ulb_num_labels: None``.
* FixMatch-only files have no ``imb_algorithm`` key (as USB's).
"""

import argparse
import sys
from collections import namedtuple
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this repository's semi_usb
MAX_LISTED = 20  # --check lists at most this many paths per kind of difference

# --------------------------------------------------------------------------------------------
# Settings: one line each.  gamma_u: = gamma_l consistent, 1 uniform, -gamma_l reversed.
# --------------------------------------------------------------------------------------------
# img_size: None = the dataset's default; otherwise a variant named <dataset>_<img_size>
# dist: None = USB's unlabeled distribution; "middle" / "head-tail" (ulb_distribution) otherwise
Setting = namedtuple("Setting", "dataset n1 gamma_l m1 gamma_u img_size dist", defaults=(None, None))
S = Setting

SETTINGS = [
    #  dataset       N1      gamma_l  M1     gamma_u
    # CIFAR-10-LT, (N1, M1) = (1500, 3000)
    S("cifar10",     1500,   100,     3000,   100),
    S("cifar10",     1500,   100,     3000,   1),
    S("cifar10",     1500,   100,     3000,  -100),
    S("cifar10",     1500,   150,     3000,   150),
    S("cifar10",     1500,   150,     3000,   1),
    S("cifar10",     1500,   150,     3000,  -150),
    # CIFAR-10-LT, (N1, M1) = (500, 4000)
    S("cifar10",     500,    100,     4000,   100),
    S("cifar10",     500,    100,     4000,   1),
    S("cifar10",     500,    100,     4000,  -100),
    S("cifar10",     500,    150,     4000,   150),
    S("cifar10",     500,    150,     4000,   1),
    S("cifar10",     500,    150,     4000,  -150),
    # CIFAR-100-LT, (N1, M1) = (150, 300)
    S("cifar100",    150,    10,      300,    10),
    S("cifar100",    150,    10,      300,    1),
    S("cifar100",    150,    10,      300,   -10),
    S("cifar100",    150,    15,      300,    15),
    S("cifar100",    150,    15,      300,    1),
    S("cifar100",    150,    15,      300,   -15),
    # CIFAR-100-LT, (N1, M1) = (50, 400)
    S("cifar100",    50,     10,      400,    10),
    S("cifar100",    50,     10,      400,    1),
    S("cifar100",    50,     10,      400,   -10),
    S("cifar100",    50,     15,      400,    15),
    S("cifar100",    50,     15,      400,    1),
    S("cifar100",    50,     15,      400,   -15),
    # STL-10-LT: labeled split imbalanced, unlabeled = the official 100k set
    S("stl10",       150,    10,      None,   1.0),
    S("stl10",       150,    20,      None,   1.0),
    S("stl10",       450,    10,      None,   1.0),
    S("stl10",       450,    20,      None,   1.0),
    # ImageNet-127: natural long tail (gamma ~ 286; USB's loader ignores the two ratios and
    # takes num_labels as a fraction of the 1,281,167 training images: 128101 ~ 10%,
    # 12810 ~ 1% labeled); 112 px (USB), 32 px and 64 px variants
    S("imagenet127", 128101, 286,     None,   286),
    S("imagenet127", 12810,  286,     None,   286),
    S("imagenet127", 128101, 286,     None,   286, img_size=32),
    S("imagenet127", 12810,  286,     None,   286, img_size=32),
    S("imagenet127", 128101, 286,     None,   286, img_size=64),
    S("imagenet127", 12810,  286,     None,   286, img_size=64),
]

SEEDS = [0, 1, 2]

# --------------------------------------------------------------------------------------------
# USB's base template, in USB's key order.  OMIT marks a key written only where a dataset or
# method sets it.
# --------------------------------------------------------------------------------------------
OMIT = object()

BASE = {
    "algorithm": "fixmatch",
    "save_dir": None,           # filled in: ./saved_models/<tree>
    "save_name": None,          # filled in: the file stem
    "resume": True,
    "load_path": None,          # filled in: <save_dir>/<save_name>/latest_model.pth
    "overwrite": True,
    "use_tensorboard": True,
    "use_wandb": OMIT,
    "epoch": 256,
    "num_train_iter": 262144,
    "num_eval_iter": 1024,
    "num_log_iter": 256,
    "num_labels": None,         # N1
    "batch_size": 64,
    "eval_batch_size": 256,
    "hard_label": True,
    "T": 0.5,
    "p_cutoff": 0.95,
    "ulb_loss_ratio": 1.0,
    "uratio": 2,
    "ema_m": 0.999,
    "crop_ratio": 0.875,
    "img_size": 32,
    "optim": "SGD",
    "lr": 0.03,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "layer_decay": 1.0,
    "amp": False,
    "clip_grad": 0.0,           # USB: `clip: 0.0` (not an argument; ignored)
    "use_cat": True,
    "net": "wrn_28_2",
    "net_from_name": False,
    "data_dir": "./data",
    "dataset": None,
    "train_sampler": "RandomSampler",
    "num_classes": None,
    "num_workers": 1,
    "seed": None,
    "world_size": 1,
    "rank": 0,
    "multiprocessing_distributed": True,
    # USB: dist_url: tcp://127.0.0.1:<fixed port> -- omitted, the runner picks a free port
    "dist_backend": "nccl",
    "gpu": None,
    "include_lb_to_ulb": False,
    "lb_imb_ratio": None,       # gamma_l
    "ulb_imb_ratio": None,      # gamma_u
    "ulb_num_labels": None,     # M1 (None: the dataset's own unlabeled set)
    "ulb_distribution": OMIT,   # written only for a middle / head-tail setting
    "lr_schedule": OMIT,        # semi_usb's protocol keys (semi_paper tree)
    "num_strong_views": OMIT,
    "imb_algorithm": OMIT,
}

# Per-dataset overrides of BASE (USB's values).
DATASETS = {
    "cifar10": {"num_classes": 10},
    "cifar100": {"num_classes": 100},
    "stl10": {"num_classes": 10},
    "imagenet127": {
        "use_wandb": False,
        "epoch": 200,
        "num_train_iter": 500000,
        "num_eval_iter": 2500,
        "batch_size": 256,
        "img_size": 112,
        "lr": 0.1,
        "weight_decay": 0.0001,
        "net": "resnet50",
        "num_classes": 127,
        "num_workers": 4,
    },
}

# --------------------------------------------------------------------------------------------
# Methods: folder/name, base overrides, imbalanced-algorithm keys (in order), and per-dataset
# overrides of those keys.  A value may be a function of the config built so far.
# --------------------------------------------------------------------------------------------
Method = namedtuple("Method", "name overrides keys per_dataset")

def declared_keys(imb_algorithm, names):
    """``imb_algorithm`` and the keys ``names`` of that plugin algorithm with the defaults its
    ``SSL_Argument`` list declares (``semi_usb/imb_algorithms/<name>/<name>.py``). ``names``
    are the keys the protocol files pin; a key added to the algorithm later takes its
    default in the files without being written into them."""
    from semi_usb.plugin import registries

    _, imb_algorithms = registries()
    defaults = {a.name.lstrip("-"): a.default for a in imb_algorithms[imb_algorithm].get_argument()}
    return {"imb_algorithm": imb_algorithm, **{name: defaults[name] for name in names}}


ACR_NAMES = ("acr_tau1", "acr_adaptive_tau1", "acr_tau_min", "acr_tau_max", "acr_tau2", "acr_tau12", "acr_est_epoch",
             "acr_u_momentum", "acr_class_vector", "acr_T")
ACR_KEYS = declared_keys("acr", ACR_NAMES)
SEMI_KEYS = declared_keys("semi", ACR_NAMES + (
    "semi_use_bank", "semi_use_plce", "semi_use_oheml", "semi_use_ealign", "semi_bank_size", "semi_decay_step",
    "semi_decay_beta", "semi_proto_T", "semi_plce_alpha", "semi_oheml_s", "semi_ealign_T", "semi_ealign_weight",
    "semi_ealign_momentum", "semi_warmup_iter", "semi_plce_weights"))
CPE_KEYS = declared_keys("cpe", ("cpe_tau1", "cpe_tau2", "cpe_tau3", "cpe_cut1", "cpe_cut2", "cpe_est_epoch",
                                 "cpe_prior_momentum"))
CPE_PER_DATASET = {
    "cifar100": {"cpe_cut1": 35, "cpe_cut2": 70},
    "imagenet127": {"cpe_cut1": 44, "cpe_cut2": 89},
}

CDMAD_KEYS = declared_keys("cdmad", ("cdmad_debias_start_iter", "cdmad_fill", "cdmad_p_cutoff", "cdmad_hard_label"))

SEMI_PER_DATASET = {
    "cifar10": {"semi_decay_step": 100},
    "cifar100": {"semi_decay_step": 200},
    "stl10": {"semi_decay_step": 100},
    "imagenet127": {"semi_decay_step": 200},
}

SIMPRO_KEYS = declared_keys("simpro", ("simpro_tau", "simpro_ema_u", "simpro_scale_ratio"))
# SimPro's authors (sh/SimPro.sh): tau 1.0 and threshold 0.2 on CIFAR-100 and ImageNet.
SIMPRO_PER_DATASET = {
    "cifar100": {"simpro_tau": 1.0, "p_cutoff": 0.2},
    "imagenet127": {"simpro_tau": 1.0, "p_cutoff": 0.2},
}

# BaCon: the authors' release (fqhank/AAAI24-BaCon-CISSL, its bacon.py and configs).
BACON_KEYS = declared_keys("bacon", (
    "bacon_abc_p_cutoff", "bacon_abc_loss_ratio", "bacon_loss_ratio", "bacon_proj_dim", "bacon_start_ratio", "bacon_T",
    "bacon_T_eps", "bacon_neg_weight", "bacon_neg_topk", "bacon_select_threshold", "bacon_freq_threshold",
    "bacon_freq_input"))

METHODS = [
    Method("fixmatch", {}, {}, {}),
    Method("fixmatch_daso", {}, {
        "imb_algorithm": "daso",
        "daso_queue_len": 256,
        "daso_T_proto": 0.05,
        "daso_interp_alpha": 0.5,
        "daso_with_dist_aware": True,
        "daso_assign_loss_ratio": 1.0,
        "daso_num_pl_dist_iter": 100,
        "daso_num_pretrain_iter": 5120,
        "daso_T_dist": 0.3,
    }, {"cifar10": {"daso_T_dist": 1.5}}),
    Method("fixmatch_abc", {}, {
        "imb_algorithm": "abc",
        "abc_p_cutoff": 0.95,
        "abc_loss_ratio": 1.0,
    }, {}),
    Method("fixmatch_acr", {}, ACR_KEYS, {}),
    Method("fixmatch_cpe", {}, CPE_KEYS, CPE_PER_DATASET),
    Method("fixmatch_cdmad", {}, CDMAD_KEYS, {}),
    Method("fixmatch_semi", {}, SEMI_KEYS, SEMI_PER_DATASET),
    # the authors' threshold variant of SeMi
    Method("fixmatch_semi_pc0.7", {"p_cutoff": 0.7}, SEMI_KEYS, SEMI_PER_DATASET),
    Method("fixmatch_simpro", {}, SIMPRO_KEYS, SIMPRO_PER_DATASET),
    Method("fixmatch_bacon", {}, BACON_KEYS, {}),
]


# --------------------------------------------------------------------------------------------
# Trees: name (folder under config/ and under ./saved_models/), methods, settings and the
# overrides of BASE that make the protocol.
# --------------------------------------------------------------------------------------------
Tree = namedtuple("Tree", "name methods settings overrides")

SEMI_PAPER = {
    "lr_schedule": "cosine",
    "uratio": 1,
    "num_strong_views": 2,
    "include_lb_to_ulb": True,
    "epoch": 500,
    "num_train_iter": 250000,
    "num_eval_iter": 500,
    "num_log_iter": 100,
}
SEMI_PAPER_KEYS = {**SEMI_KEYS, "semi_warmup_iter": 3000}  # gate `epoch > 5`: 6 x 500 iterations

# SimPro's authors' protocol (LeapLabTHU/SimPro, sh/SimPro.sh): ACR's frame (cosine lr, two strong
# views) with mu = 8 unlabeled batches per labeled batch, lr 0.17 and 43,000 steps (86 epochs
# of 500); the labeled images are kept out of the unlabeled set. STL-10: mu = 16.
SIMPRO_PAPER = {
    "lr_schedule": "cosine",
    "uratio": 8,
    "num_strong_views": 2,
    "lr": 0.17,
    "epoch": 86,
    "num_train_iter": 43000,
    "num_eval_iter": 500,
    "num_log_iter": 100,
}
SIMPRO_PAPER_SETTINGS = [
    # the CIFAR and STL-10 settings of sh/SimPro.sh: consistent, uniform, reversed, and its
    # middle / head-tail unlabeled distributions (ulb_distribution)
    *(S(ds, n1, g, m1, gu, dist=d) for ds, n1, m1, gammas in (("cifar10", 500, 4000, (150, 100)),
                                                               ("cifar100", 50, 400, (20, 10)))
      for g in gammas for gu, d in ((g, None), (1, None), (-g, None), (g, "middle"), (g, "head-tail"))),
    S("stl10", 450, 10, None, 1.0),
    S("stl10", 450, 20, None, 1.0),
]

TREES = [
    Tree("classic_cv_imb", METHODS, SETTINGS, {}),
    Tree("semi_paper", [
        Method("fixmatch", {}, {}, {}),
        Method("fixmatch_acr", {}, ACR_KEYS, {}),
        Method("fixmatch_semi", {}, SEMI_PAPER_KEYS, SEMI_PER_DATASET),
        Method("fixmatch_semi_pc0.7", {"p_cutoff": 0.7}, SEMI_PAPER_KEYS, SEMI_PER_DATASET),
    ], [s for s in SETTINGS if s.dataset in ("cifar10", "cifar100")], SEMI_PAPER),
    Tree("simpro_paper", [
        Method("fixmatch_simpro", {}, SIMPRO_KEYS, {**SIMPRO_PER_DATASET, "stl10": {"uratio": 16}}),
    ], SIMPRO_PAPER_SETTINGS, SIMPRO_PAPER),
]
TREE_NAMES = [t.name for t in TREES]


# --------------------------------------------------------------------------------------------
# Building and rendering
# --------------------------------------------------------------------------------------------
def setting_tag(s):
    """``cifar10_lb1500_100_ulb3000_-100`` (the part of the name between method and seed):
    values as written in the table (int -> ``100`` / ``-100``, float -> ``1.0``, USB's STL
    naming; ``None``), by semi_usb's one setting-name formatter."""
    from semi_usb.naming import format_setting

    ds = s.dataset if s.img_size is None else f"{s.dataset}_{s.img_size}"
    dist = "" if s.dist is None else f"_{s.dist}"
    return format_setting(ds, s.n1, s.gamma_l, s.m1, s.gamma_u) + dist


def config_name(method, setting, seed):
    return f"{method.name}_{setting_tag(setting)}_{seed}"


def build_config(method, setting, seed, tree=TREES[0]):
    """The ordered config dict (OMIT keys removed) for one file of ``tree``."""
    if setting.dataset not in DATASETS:
        raise KeyError(f"dataset {setting.dataset!r} has no entry in DATASETS")
    name = config_name(method, setting, seed)
    cfg = dict(BASE)
    cfg.update(DATASETS[setting.dataset])
    cfg.update(tree.overrides)
    if setting.img_size is not None:
        cfg["img_size"] = setting.img_size
    cfg.update(method.overrides)
    save_dir = f"./saved_models/{tree.name}"
    cfg.update({
        "save_dir": save_dir,
        "save_name": name,
        "load_path": f"{save_dir}/{name}/latest_model.pth",
        "num_labels": setting.n1,
        "dataset": setting.dataset,
        "seed": seed,
        "lb_imb_ratio": setting.gamma_l,
        "ulb_imb_ratio": setting.gamma_u,
        "ulb_num_labels": setting.m1,
    })
    if setting.dist is not None:
        cfg["ulb_distribution"] = setting.dist
    for key, value in method.keys.items():
        cfg[key] = value
    cfg.update(method.per_dataset.get(setting.dataset, {}))
    out = {}
    for key, value in cfg.items():
        if callable(value):
            value = value(cfg)
        if value is not OMIT:
            out[key] = value
    return out


def _fmt_value(v):
    if v is None:
        return "None"  # USB's literal; YAML reads it as the string 'None'
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = repr(v)
        if not all(c in "0123456789.-" for c in text) or "." not in text:
            raise ValueError(f"float {v!r} would not read back as a YAML 1.1 float")
        return text
    if isinstance(v, str):
        if yaml.safe_load(v) == v and v.strip() == v and ": " not in v and " #" not in v:
            return v
        return "'" + v.replace("'", "''") + "'"
    raise TypeError(f"cannot render {type(v).__name__}: {v!r}")


def render(cfg):
    text = "".join(f"{k}: {_fmt_value(v)}\n" for k, v in cfg.items())
    expected = {k: ("None" if v is None else v) for k, v in cfg.items()}
    loaded = yaml.safe_load(text)
    if loaded != expected or list(loaded) != list(expected):
        raise AssertionError(f"rendered YAML does not read back:\n{text}")
    return text


def generate_all(tree=TREES[0]):
    """{relative path: file text} for the whole of ``tree``."""
    files = {}
    for method in tree.methods:
        for setting in tree.settings:
            for seed in SEEDS:
                cfg = build_config(method, setting, seed, tree)
                rel = f"{method.name}/{cfg['save_name']}.yaml"
                if rel in files:
                    raise ValueError(f"duplicate config {rel}: check SETTINGS")
                files[rel] = render(cfg)
    return files


def _existing(out, tree):
    """Relative paths of the *.yaml files in the method folders this script owns."""
    found = set()
    for method in tree.methods:
        d = out / method.name
        if d.is_dir():
            found.update(f"{method.name}/{p.name}" for p in d.glob("*.yaml"))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", choices=TREE_NAMES, default=None,
                        help="the tree to generate or check (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="root of the tree (default: config/<tree> next to this script; "
                             "without --tree: the classic_cv_imb tree)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the tree on disk is not up to date")
    args = parser.parse_args(argv)
    if args.out is not None and args.tree is None:
        args.tree = "classic_cv_imb"  # the usage before there were two trees
    trees = [t for t in TREES if args.tree in (None, t.name)]
    return max(sync_tree(t, args.out or HERE / t.name, args.check) for t in trees)


def sync_tree(tree, out, check):
    """Write (or, with ``check``, compare) one tree under ``out``; the exit status."""
    files = generate_all(tree)
    existing = _existing(out, tree)
    stale = sorted(existing - set(files))
    missing, changed = [], []
    for rel, text in files.items():
        path = out / rel
        if rel not in existing:
            missing.append(rel)
        elif path.read_text() != text:
            changed.append(rel)

    if check:
        for label, items in (("missing", missing), ("differs", changed), ("stale", stale)):
            for rel in items[:MAX_LISTED]:
                print(f"{label}: {out / rel}")
            if len(items) > MAX_LISTED:
                print(f"{label}: ... and {len(items) - MAX_LISTED} more")
        if missing or changed or stale:
            print(f"{out} is out of date ({len(missing)} missing, {len(changed)} differ, "
                  f"{len(stale)} stale): run python {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{out}: {len(files)} files up to date")
        return 0

    for rel in missing + changed:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel])
    for rel in stale:
        (out / rel).unlink()
    per_method = {m.name: sum(r.startswith(m.name + "/") for r in files) for m in tree.methods}
    for name, n in per_method.items():
        print(f"{name}: {n} files")
    print(f"{out}: {len(files)} files, {len(missing)} new, {len(changed)} rewritten, "
          f"{len(stale)} stale removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
