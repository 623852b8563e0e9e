"""Checks of the generated class-imbalanced config tree (config/classic_cv_imb).

The tree is produced by config/generate.py; these tests check that it is up to date, that every
file is a well-formed USB config naming registered algorithms and known arguments, that it covers
every setting of the protocol (docs/PROTOCOL.md) for every method and seed, and spot-check values;
and that the hand-written files (config/cpu_compare, config/quickstart) build for every method.
semilearn is imported once, by the module-scoped ``registries`` fixture.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "config" / "generate.py"
TREE = ROOT / "config" / "classic_cv_imb"

METHODS = ["fixmatch", "fixmatch_daso", "fixmatch_abc", "fixmatch_acr", "fixmatch_cpe", "fixmatch_cdmad",
           "fixmatch_semi"]
SEMI_PC07 = "fixmatch_semi_pc0.7"
METHODS_2024 = ["fixmatch_simpro", "fixmatch_bacon"]  # generated after SEMI_PC07
IMB_OF = {"fixmatch": None, "fixmatch_daso": "daso", "fixmatch_abc": "abc",
          "fixmatch_acr": "acr", "fixmatch_cpe": "cpe", "fixmatch_cdmad": "cdmad",
          "fixmatch_semi": "semi", SEMI_PC07: "semi",
          "fixmatch_simpro": "simpro", "fixmatch_bacon": "bacon"}
SEEDS = [0, 1, 2]
SEMI_SWITCHES = ["semi_use_bank", "semi_use_plce", "semi_use_oheml", "semi_use_ealign"]

# Keys every file carries (USB's template less `clip`/`dist_url`, plus `clip_grad`).
BASE_KEYS = [
    "algorithm", "save_dir", "save_name", "resume", "load_path", "overwrite", "use_tensorboard",
    "epoch", "num_train_iter", "num_eval_iter", "num_log_iter", "num_labels", "batch_size",
    "eval_batch_size", "hard_label", "T", "p_cutoff", "ulb_loss_ratio", "uratio", "ema_m",
    "crop_ratio", "img_size", "optim", "lr", "momentum", "weight_decay", "layer_decay", "amp",
    "clip_grad", "use_cat", "net", "net_from_name", "data_dir", "dataset", "train_sampler",
    "num_classes", "num_workers", "seed", "world_size", "rank", "multiprocessing_distributed",
    "dist_backend", "gpu", "include_lb_to_ulb", "lb_imb_ratio", "ulb_imb_ratio",
    "ulb_num_labels",
]

NAME_RE = re.compile(
    r"^(?P<method>.+?)_(?P<tag>(?P<dataset>cifar100|cifar10|stl10|imagenet127)(?:_(?P<size>\d+))?"
    r"_lb(?P<n1>\d+)_(?P<gl>-?\d+)_ulb(?P<m1>\d+|None)_(?P<gu>-?\d+(?:\.\d+)?))_(?P<seed>\d+)$"
)


def protocol_settings():
    """The settings of docs/PROTOCOL.md, spelled out independently of the generator's table,
    as USB-style name tags (``cifar10_lb1500_100_ulb3000_-100``)."""
    tags = []
    for n1, m1 in [(1500, 3000), (500, 4000)]:
        for g in [100, 150]:
            tags += [f"cifar10_lb{n1}_{g}_ulb{m1}_{gu}" for gu in (g, 1, -g)]
    for n1, m1 in [(150, 300), (50, 400)]:
        for g in [10, 15]:
            tags += [f"cifar100_lb{n1}_{g}_ulb{m1}_{gu}" for gu in (g, 1, -g)]
    for n1 in [150, 450]:
        for g in [10, 20]:
            tags.append(f"stl10_lb{n1}_{g}_ulbNone_1.0")
    for ds in ["imagenet127", "imagenet127_32", "imagenet127_64"]:
        for n1 in [128101, 12810]:
            tags.append(f"{ds}_lb{n1}_286_ulbNone_286")
    return tags


def _load_all():
    configs = {}
    for path in sorted(TREE.glob("*/*.yaml")):
        with open(path) as f:
            configs[path] = yaml.safe_load(f)
    return configs


CONFIGS = _load_all()


def _by_method(method):
    return {p: c for p, c in CONFIGS.items() if p.parent.name == method}


def _algorithm_pairs():
    return sorted({(c.get("algorithm"), c.get("imb_algorithm")) for c in CONFIGS.values()},
                  key=lambda pair: (pair[0] or "", pair[1] or ""))


def _cfg(method, tag, seed=0):
    return CONFIGS[TREE / method / f"{method}_{tag}_{seed}.yaml"]


@pytest.fixture(scope="module")
def registries():
    """semilearn's registries after `semi_usb.plugin.register()` (once for the module)."""
    from semi_usb.plugin import registries as plugin_registries

    return plugin_registries()


# ------------------------------------------------------------------ (a) the tree is up to date
def _run_generator(*args):
    return subprocess.run([sys.executable, str(GENERATOR), *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_tree_is_up_to_date():
    res = _run_generator("--check")
    assert res.returncode == 0, res.stdout + res.stderr


def test_check_detects_drift(tmp_path):
    out = tmp_path / "tree"
    assert _run_generator("--out", str(out)).returncode == 0
    assert _run_generator("--out", str(out), "--check").returncode == 0

    edited = out / "fixmatch_acr" / "fixmatch_acr_cifar10_lb1500_100_ulb3000_-100_0.yaml"
    edited.write_text(edited.read_text().replace("acr_tau2: 2.0", "acr_tau2: 1.0"))
    removed = out / "fixmatch" / "fixmatch_stl10_lb150_10_ulbNone_1.0_1.yaml"
    removed.unlink()
    stale = out / "fixmatch_semi" / "fixmatch_semi_cifar10_lb1_1_ulb1_1_0.yaml"
    stale.write_text("algorithm: fixmatch\n")

    res = _run_generator("--out", str(out), "--check")
    assert res.returncode == 1
    assert f"differs: {edited}" in res.stdout
    assert f"missing: {removed}" in res.stdout
    assert f"stale: {stale}" in res.stdout

    assert _run_generator("--out", str(out)).returncode == 0
    assert not stale.exists() and removed.exists()
    assert "acr_tau2: 2.0" in edited.read_text()
    assert _run_generator("--out", str(out), "--check").returncode == 0


# ------------------------------------------------------------------ (b) well-formed USB configs
def test_tree_is_not_empty():
    assert len(CONFIGS) >= len(METHODS) * len(protocol_settings()) * len(SEEDS)


@pytest.mark.parametrize("method", METHODS + [SEMI_PC07] + METHODS_2024)
def test_files_are_well_formed(method):
    configs = _by_method(method)
    assert configs, f"no files for {method}"
    errors = []
    for path, cfg in configs.items():
        stem = path.stem
        m = NAME_RE.match(stem)
        if not isinstance(cfg, dict):
            errors.append(f"{path.name}: not a mapping")
            continue
        if m is None or m["method"] != method:
            errors.append(f"{path.name}: name not <method>_<dataset>_lb.._ulb.._<seed>")
            continue
        missing = [k for k in BASE_KEYS if k not in cfg]
        if missing:
            errors.append(f"{path.name}: missing base keys {missing}")
            continue
        expect = {
            "save_name": stem,
            "save_dir": "./saved_models/classic_cv_imb",
            "load_path": f"./saved_models/classic_cv_imb/{stem}/latest_model.pth",
            "resume": True,
            "algorithm": "fixmatch",
            "seed": int(m["seed"]),
            "dataset": m["dataset"],
            "num_labels": int(m["n1"]),
            "lb_imb_ratio": int(m["gl"]),
            "ulb_imb_ratio": float(m["gu"]) if "." in m["gu"] else int(m["gu"]),
            "ulb_num_labels": "None" if m["m1"] == "None" else int(m["m1"]),
            "gpu": "None",
            "multiprocessing_distributed": True,
            "include_lb_to_ulb": False,
            "clip_grad": 0.0,
        }
        if m["size"]:
            expect["img_size"] = int(m["size"])
        for key, value in expect.items():
            if cfg[key] != value or type(cfg[key]) is not type(value):
                errors.append(f"{path.name}: {key} = {cfg[key]!r}, expected {value!r}")
        for key in ("clip", "dist_url"):
            if key in cfg:
                errors.append(f"{path.name}: carries {key!r} (deliberately dropped)")
        if cfg.get("imb_algorithm") != IMB_OF[method]:
            errors.append(f"{path.name}: imb_algorithm = {cfg.get('imb_algorithm')!r}")
    assert not errors, "\n".join(errors[:50])


@pytest.mark.parametrize("algorithm,imb_algorithm", _algorithm_pairs())
def test_algorithms_are_registered(registries, algorithm, imb_algorithm):
    # acr / semi: fails until semi_usb registers them.
    algorithms, imb_algorithms = registries
    assert algorithm in algorithms, f"algorithm {algorithm!r} not in semilearn's ALGORITHMS"
    if imb_algorithm is not None:
        assert imb_algorithm in imb_algorithms, (
            f"imb_algorithm {imb_algorithm!r} not in IMB_ALGORITHMS after `semi_usb.plugin.register()`")


@pytest.mark.parametrize("algorithm,imb_algorithm", _algorithm_pairs())
def test_keys_are_known_arguments(registries, algorithm, imb_algorithm):
    """Every key is a semilearn base argument or an argument of the (imb) algorithm, so no
    key is silently ignored (USB's own `clip:` was)."""
    from semilearn.lighting.config import get_config

    algorithms, imb_algorithms = registries
    if imb_algorithm is not None and imb_algorithm not in imb_algorithms:
        pytest.fail(f"imb_algorithm {imb_algorithm!r} is not registered (semi_usb)")
    known = set(vars(get_config({"algorithm": algorithm, "imb_algorithm": imb_algorithm})))
    known.update(a.name.lstrip("-").replace("-", "_")
                 for a in algorithms[algorithm].get_argument())
    if imb_algorithm is not None:
        known.update(a.name.lstrip("-").replace("-", "_")
                     for a in imb_algorithms[imb_algorithm].get_argument())
    unknown = {}
    for path, cfg in CONFIGS.items():
        if (cfg.get("algorithm"), cfg.get("imb_algorithm")) == (algorithm, imb_algorithm):
            for key in set(cfg) - known:
                unknown.setdefault(key, path.name)
    assert not unknown, f"keys no argument reads: {unknown}"


# ------------------------------------------------------------------ (c) coverage
@pytest.mark.parametrize("method", METHODS + [SEMI_PC07] + METHODS_2024)
def test_every_setting_and_seed_exists(method):
    missing = [f"{method}_{tag}_{seed}.yaml"
               for tag in protocol_settings() for seed in SEEDS
               if not (TREE / method / f"{method}_{tag}_{seed}.yaml").is_file()]
    assert not missing, f"{len(missing)} missing, e.g. {missing[:5]}"


def test_generator_table_matches_tree():
    spec = importlib.util.spec_from_file_location("config_generate", GENERATOR)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert [m.name for m in gen.METHODS] == METHODS + [SEMI_PC07] + METHODS_2024
    assert list(gen.SEEDS) == SEEDS
    tags = {gen.setting_tag(s) for s in gen.SETTINGS}
    assert set(protocol_settings()) <= tags
    assert len(tags) == len(gen.SETTINGS), "duplicate settings in the table"
    assert len(CONFIGS) == len(gen.METHODS) * len(gen.SETTINGS) * len(gen.SEEDS)


# ------------------------------------------------------------------ (d) SeMi
@pytest.mark.parametrize("method", ["fixmatch_semi", SEMI_PC07])
def test_semi_files_carry_switches(method):
    for path, cfg in _by_method(method).items():
        assert cfg["imb_algorithm"] == "semi", path.name
        for key in SEMI_SWITCHES:
            assert cfg.get(key) is True, f"{path.name}: {key} = {cfg.get(key)!r}"
        assert cfg["acr_adaptive_tau1"] is False and cfg["acr_tau1"] == 0.0, path.name


def test_semi_pc07_variant_for_every_semi_file():
    semi = _by_method("fixmatch_semi")
    assert semi
    for path, cfg in semi.items():
        assert cfg["p_cutoff"] == 0.95, path.name
        stem = SEMI_PC07 + path.stem[len("fixmatch_semi"):]
        variant = CONFIGS.get(TREE / SEMI_PC07 / f"{stem}.yaml")
        assert variant is not None, f"no {SEMI_PC07} variant of {path.name}"
        assert variant["p_cutoff"] == 0.7
        diff = {k for k in set(cfg) | set(variant) if cfg.get(k) != variant.get(k)}
        assert diff == {"p_cutoff", "save_name", "load_path"}, (path.name, diff)
        assert list(variant) == list(cfg), f"{stem}: key order differs from {path.name}"


# ------------------------------------------------------------------ (e) semantic spot checks
def test_spot_values():
    c10 = "cifar10_lb1500_100_ulb3000_100"
    c100 = "cifar100_lb150_10_ulb300_10"
    stl = "stl10_lb150_10_ulbNone_1.0"
    inet = "imagenet127_lb128101_286_ulbNone_286"

    # SeMi decay step per dataset, warm-up = 5 x num_eval_iter
    assert _cfg("fixmatch_semi", c10)["semi_decay_step"] == 100
    assert _cfg("fixmatch_semi", c100)["semi_decay_step"] == 200
    assert _cfg("fixmatch_semi", stl)["semi_decay_step"] == 100
    assert _cfg("fixmatch_semi", inet)["semi_decay_step"] == 200
    assert _cfg("fixmatch_semi", c10)["semi_warmup_iter"] == 3000  # the authors' 6 epochs of 500
    assert _cfg("fixmatch_semi", inet)["semi_warmup_iter"] == 3000

    # ImageNet-127: USB's ResNet-50 protocol; 32/64 px variants differ only in img_size
    for method in METHODS:
        cfg = _cfg(method, inet, 1)
        assert (cfg["net"], cfg["num_classes"], cfg["img_size"]) == ("resnet50", 127, 112)
        assert (cfg["batch_size"], cfg["lr"], cfg["weight_decay"]) == (256, 0.1, 0.0001)
        assert (cfg["num_train_iter"], cfg["num_eval_iter"], cfg["epoch"]) == (500000, 2500, 200)
        for size in (32, 64):
            small = _cfg(method, inet.replace("imagenet127", f"imagenet127_{size}"), 1)
            assert small["img_size"] == size and small["dataset"] == "imagenet127"
            assert {k for k in cfg if cfg[k] != small.get(k)} == {
                "img_size", "save_name", "load_path"}

    # CIFAR-100 keeps USB's wrn_28_2 / 5e-4; CIFAR-10 the WRN-28-2 protocol
    cfg = _cfg("fixmatch", c100)
    assert (cfg["net"], cfg["num_classes"], cfg["weight_decay"]) == ("wrn_28_2", 100, 0.0005)
    cfg = _cfg("fixmatch", c10)
    assert (cfg["net"], cfg["lr"], cfg["uratio"], cfg["num_train_iter"]) == (
        "wrn_28_2", 0.03, 2, 262144)

    # CPE's class-wise batch-norm cuts: the authors' per dataset
    assert (_cfg("fixmatch_cpe", c10)["cpe_cut1"], _cfg("fixmatch_cpe", c10)["cpe_cut2"]) == (2, 4)
    assert (_cfg("fixmatch_cpe", c100)["cpe_cut1"], _cfg("fixmatch_cpe", c100)["cpe_cut2"]) == (35, 70)
    assert (_cfg("fixmatch_cpe", stl)["cpe_tau2"], _cfg("fixmatch_cpe", stl)["net"]) == (2.0, "wrn_28_2")

    # CDMAD: the authors' soft, unthresholded pseudo-labels, debiased from iteration 50,500
    cfg = _cfg("fixmatch_cdmad", c100)
    assert (cfg["cdmad_p_cutoff"], cfg["cdmad_hard_label"], cfg["cdmad_debias_start_iter"]) == (0.0, False, 50500)

    # DASO's distribution temperature, ABC's keys
    assert _cfg("fixmatch_daso", c10)["daso_T_dist"] == 1.5
    assert _cfg("fixmatch_daso", c100)["daso_T_dist"] == 0.3
    assert _cfg("fixmatch_daso", stl)["daso_T_dist"] == 0.3
    assert _cfg("fixmatch_abc", c10)["abc_p_cutoff"] == 0.95

    # ACR adaptive, SeMi fixed tau1 = 0
    acr = _cfg("fixmatch_acr", c10)
    assert acr["acr_adaptive_tau1"] is True and acr["acr_tau1"] == 2.0
    assert (acr["acr_tau2"], acr["acr_tau12"], acr["acr_est_epoch"]) == (2.0, 2.0, 5)
    assert acr["acr_class_vector"] == "acr_code" and acr["acr_u_momentum"] == 0.99
    assert not any(k.startswith("semi_") for k in acr)

    # uniform / reversed / STL unlabeled set
    assert _cfg("fixmatch", "cifar10_lb500_150_ulb4000_1")["ulb_imb_ratio"] == 1
    assert _cfg("fixmatch", "cifar10_lb500_150_ulb4000_-150")["ulb_imb_ratio"] == -150
    cfg = _cfg("fixmatch", stl)
    assert cfg["ulb_imb_ratio"] == 1.0 and cfg["ulb_num_labels"] == "None"
    assert "imb_algorithm" not in _cfg("fixmatch", c10)


USB_DASO_EXAMPLE = """\
algorithm: fixmatch
save_dir: ./saved_models/classic_cv_imb
save_name: fixmatch_daso_cifar10_lb1500_100_ulb3000_-100_0
resume: True
load_path: ./saved_models/classic_cv_imb/fixmatch_daso_cifar10_lb1500_100_ulb3000_-100_0/latest_model.pth
overwrite: True
use_tensorboard: True
epoch: 256
num_train_iter: 262144
num_eval_iter: 1024
num_log_iter: 256
num_labels: 1500
batch_size: 64
eval_batch_size: 256
hard_label: True
T: 0.5
p_cutoff: 0.95
ulb_loss_ratio: 1.0
uratio: 2
ema_m: 0.999
crop_ratio: 0.875
img_size: 32
optim: SGD
lr: 0.03
momentum: 0.9
weight_decay: 0.0005
layer_decay: 1.0
amp: False
clip: 0.0
use_cat: True
net: wrn_28_2
net_from_name: False
data_dir: ./data
dataset: cifar10
train_sampler: RandomSampler
num_classes: 10
num_workers: 1
seed: 0
world_size: 1
rank: 0
multiprocessing_distributed: True
dist_url: tcp://127.0.0.1:10185
dist_backend: nccl
gpu: None
include_lb_to_ulb: False
lb_imb_ratio: 100
ulb_imb_ratio: -100
ulb_num_labels: 3000
imb_algorithm: daso
daso_queue_len: 256
daso_T_proto: 0.05
daso_interp_alpha: 0.5
daso_with_dist_aware: True
daso_assign_loss_ratio: 1.0
daso_num_pl_dist_iter: 100
daso_num_pretrain_iter: 5120
daso_T_dist: 1.5
"""


def test_matches_usb_file_up_to_documented_changes():
    """USB's own file, with clip -> clip_grad and dist_url dropped, is ours byte for byte."""
    expected = (USB_DASO_EXAMPLE.replace("clip: 0.0\n", "clip_grad: 0.0\n")
                .replace("dist_url: tcp://127.0.0.1:10185\n", ""))
    ours = TREE / "fixmatch_daso" / "fixmatch_daso_cifar10_lb1500_100_ulb3000_-100_0.yaml"
    assert ours.read_text() == expected


# ------------------------------------------------------------------ hand-written configs
HAND_WRITTEN = sorted((ROOT / "config").glob("cpu_compare/*.yaml")) + sorted((ROOT / "config").glob("quickstart/*.yaml"))


@pytest.mark.parametrize("path", HAND_WRITTEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_hand_written_configs_build_for_every_compared_method(registries, path):
    """The comparison and quick-start files are not generated: each must build (known keys,
    right types, valid values) for every method `compare` runs on it, and the only notes
    are the other methods' keys it ignores."""
    from semi_usb.config import build_args

    with open(path) as f:
        raw = yaml.safe_load(f)
    for method in ["fixmatch", "daso", "abc", "acr", "semi", "simpro", "bacon"]:
        notes = []
        args = build_args(method, str(path), {}, warn=notes.append)
        assert (args.num_train_iter, args.net, args.dataset) == (raw["num_train_iter"], raw["net"], raw["dataset"])
        assert all(n.startswith("note: ignored keys of other methods") for n in notes), (method, notes)


# ------------------------------------------------------------------ config/semi_paper (authors' protocol)
SEMI_PAPER = ROOT / "config" / "semi_paper"
SEMI_PAPER_FILES = sorted(SEMI_PAPER.glob("*/*.yaml"))


def test_semi_paper_tree_covers_its_methods_and_cifar_settings():
    tags = [t for t in protocol_settings() if t.startswith("cifar")]
    expected = {f"{m}/{m}_{t}_{s}.yaml" for m in ["fixmatch", "fixmatch_acr", "fixmatch_semi", SEMI_PC07]
                for t in tags for s in SEEDS}
    assert {f"{p.parent.name}/{p.name}" for p in SEMI_PAPER_FILES} == expected


@pytest.mark.parametrize("path", SEMI_PAPER_FILES, ids=lambda p: p.stem)
def test_semi_paper_files_build_in_the_authors_protocol(registries, path):
    from semi_usb.config import build_args

    notes = []
    args = build_args(None, str(path), {}, warn=notes.append)
    assert not notes, notes
    assert (args.lr_schedule, args.uratio, args.num_strong_views, args.include_lb_to_ulb) == ("cosine", 1, 2, True)
    assert (args.num_train_iter, args.epoch, args.num_eval_iter) == (250000, 500, 500)
    assert args.save_dir == "./saved_models/semi_paper" and args.save_name == path.stem
    assert args.p_cutoff == (0.7 if path.parent.name == SEMI_PC07 else 0.95)
    if args.imb_algorithm == "semi":
        assert args.semi_warmup_iter == 3000
        assert args.semi_decay_step == (100 if args.dataset == "cifar10" else 200)


def test_simpro_files_carry_the_authors_per_dataset_values():
    """sh/SimPro.sh: tau 2.0 and threshold 0.95 on CIFAR-10 and STL-10, tau 1.0 and threshold
    0.2 on CIFAR-100 and ImageNet; EMA momentum 0.9 of the marginals."""
    configs = _by_method("fixmatch_simpro")
    assert len(configs) == len(protocol_settings()) * len(SEEDS)
    for path, cfg in configs.items():
        small = cfg["dataset"] in ("cifar100", "imagenet127")
        assert (cfg["simpro_tau"], cfg["p_cutoff"]) == ((1.0, 0.2) if small else (2.0, 0.95)), path.name
        assert (cfg["simpro_ema_u"], cfg["simpro_scale_ratio"]) == (0.9, 0.0), path.name


def test_bacon_files_carry_the_authors_values():
    """The values of the authors' release (their bacon.py's constants, their configs' ABC keys)."""
    configs = _by_method("fixmatch_bacon")
    assert len(configs) == len(protocol_settings()) * len(SEEDS)
    for path, cfg in configs.items():
        values = (cfg["bacon_abc_p_cutoff"], cfg["bacon_proj_dim"], cfg["bacon_start_ratio"], cfg["bacon_T"],
                  cfg["bacon_T_eps"], cfg["bacon_neg_weight"], cfg["bacon_neg_topk"], cfg["bacon_select_threshold"],
                  cfg["bacon_freq_threshold"], cfg["bacon_freq_input"])
        assert values == (0.95, 16, 0.5, 0.1, 0.0005, 64.0, 3, 0.98, 0.95, "logits"), path.name
        assert "num_strong_views" not in cfg and cfg["uratio"] == 2, path.name  # USB's: one strong view


# ------------------------------------------------------------------ config/simpro_paper (SimPro's authors' protocol)
SIMPRO_PAPER_FILES = sorted((ROOT / "config" / "simpro_paper").glob("*/*.yaml"))


def test_simpro_paper_tree_covers_the_authors_settings():
    kinds = lambda g: (g, 1, -g, f"{g}_middle", f"{g}_head-tail")  # noqa: E731
    tags = [f"cifar10_lb500_{g}_ulb4000_{gu}" for g in (150, 100) for gu in kinds(g)]
    tags += [f"cifar100_lb50_{g}_ulb400_{gu}" for g in (20, 10) for gu in kinds(g)]
    tags += [f"stl10_lb450_{g}_ulbNone_1.0" for g in (10, 20)]
    expected = {f"fixmatch_simpro/fixmatch_simpro_{t}_{s}.yaml" for t in tags for s in SEEDS}
    assert {f"{p.parent.name}/{p.name}" for p in SIMPRO_PAPER_FILES} == expected


@pytest.mark.parametrize("path", SIMPRO_PAPER_FILES, ids=lambda p: p.stem)
def test_simpro_paper_files_build_in_the_authors_protocol(registries, path):
    from semi_usb.config import build_args

    notes = []
    args = build_args(None, str(path), {}, warn=notes.append)
    assert not notes, notes
    assert (args.imb_algorithm, args.lr_schedule, args.num_strong_views, args.include_lb_to_ulb) == \
        ("simpro", "cosine", 2, False)
    assert (args.lr, args.batch_size, args.uratio) == (0.17, 64, 16 if args.dataset == "stl10" else 8)
    assert (args.num_train_iter, args.epoch, args.num_eval_iter) == (43000, 86, 500)
    assert args.save_dir == "./saved_models/simpro_paper" and args.save_name == path.stem
    assert (args.simpro_tau, args.p_cutoff) == ((1.0, 0.2) if args.dataset == "cifar100" else (2.0, 0.95))
    assert args.ulb_distribution == next((d for d in ("middle", "head-tail") if path.stem.endswith(f"_{d}_{args.seed}")),
                                         "usb")
