"""Reliability, second pass: races on a run folder, atomic run files, content-keyed
image-folder caches, declared value ranges, I/O failures, and commands that leave nothing
behind when their input is bad.

Real data (scikit-learn's digits; small image folders made from real images) and the real
trainer on the CPU. docs/reliability.md lists what is covered.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from conftest import QUICKSTART, REPO
from semi_usb.cli import main
from run_helpers import digits_cfg, digits_yaml, flags, small_folder, tmpfs, tree  # noqa: F401  (fixtures)

RACE_DRIVER = textwrap.dedent("""
    import multiprocessing as mp, os, sys

    def child(barrier, refused, argv, err_path, code):
        import contextlib
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        from semi_usb import cli, runner  # the heavy imports before the barrier
        claim = runner.claim

        @contextlib.contextmanager
        def claim_and_hold(args):
            # the real claim (folder, flock, decide); the one that takes it then holds the lock
            # until the other has been answered, so that a fast winner cannot finish its run
            # before the loser reaches the lock (the loser would then meet a finished run)
            with claim(args) as folder:
                refused.wait(120)
                yield folder

        runner.claim = claim_and_hold
        barrier.wait()                    # both enter `semilearn train` at the same moment
        try:
            code.value = cli.main(argv)
        finally:
            refused.set()

    if __name__ == "__main__":
        import json
        argvs, errs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
        ctx = mp.get_context("spawn")
        barrier, refused = ctx.Barrier(2), ctx.Event()
        codes = [ctx.Value("i", -1) for _ in argvs]
        procs = [ctx.Process(target=child, args=(barrier, refused, a, e, c)) for a, e, c in zip(argvs, errs, codes)]
        for p in procs: p.start()
        for p in procs: p.join()
        print(json.dumps([c.value for c in codes]))
""")


def test_two_trains_racing_on_one_run_folder_one_trains_the_other_is_refused(digits_yaml, tmp_path):
    """Two `semilearn train` on one save_name with different seeds, released together by a
    barrier: exactly one trains, the other gets one line and exit 2, and the folder holds
    one run's config, checkpoint, summary and evaluation history. The one that takes the lock
    holds it until the other is answered (else a fast winner may finish before the loser
    looks, and the loser meets a finished run instead of a held lock: CI of 2026-12-03)."""
    driver = tmp_path / "race.py"
    driver.write_text(RACE_DRIVER, encoding="utf-8")
    save_dir = tmp_path / "runs"
    argvs = [["train", "--algorithm", "fixmatch"] + flags(digits_yaml, save_dir, num_train_iter=4, epoch=1,
                                                           num_eval_iter=2, seed=seed) for seed in (0, 1)]
    errs = [str(tmp_path / f"err{seed}.txt") for seed in (0, 1)]
    out = subprocess.run([sys.executable, str(driver), json.dumps(argvs), json.dumps(errs)], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    codes = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(codes) == [0, 2], (codes, [open(e).read()[-1000:] for e in errs])
    winner, loser = codes.index(0), codes.index(2)
    lines = [line for line in open(errs[loser], encoding="utf-8").read().splitlines() if line.strip()]
    run = save_dir / "run"
    assert lines == [f"semilearn train: error: run {run} is in use by another process: wait for it to end, "
                     "or choose another save_name"], lines
    with open(run / "config.yaml") as f:
        assert yaml.safe_load(f)["seed"] == winner
    with open(run / "summary.json") as f:
        summary = json.load(f)
    assert (summary["seed"], summary["iterations_done"]) == (winner, 4)
    rows = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [r["it"] for r in rows] == [2, 4]  # one run's evaluations, none twice
    assert abs(rows[-1]["top1"] - summary["final"]["top1"]) < 1e-9
    import torch

    assert torch.load(run / "latest_model.pth", map_location="cpu", weights_only=True)["it"] == 4


# ------------------------------------------------------------------ atomic run files

from run_helpers import SEMI, copy_run, finished_run  # noqa: E402,F401  (fixture)

FINISHED_FLAGS = dict(num_train_iter=4, epoch=1, num_eval_iter=2, **SEMI)


def test_a_torn_last_history_line_is_dropped_on_resume(finished_run, digits_yaml, tmp_path):
    """A kill while a row is appended leaves a partial last line: the resume drops it (and
    every later reader finds whole rows only)."""
    run = copy_run(finished_run, tmp_path)
    os.remove(os.path.join(run, "summary.json"))
    hist = os.path.join(run, "eval_history.jsonl")
    with open(hist, encoding="utf-8") as f:
        whole = f.read()
    with open(hist, "a", encoding="utf-8") as f:
        f.write('{"it": 6, "top1": 0.')  # torn
    assert main(["train", "--algorithm", "semi", "--resume", "True"] + flags(digits_yaml, tmp_path / "saved",
                                                                             **FINISHED_FLAGS)) == 0
    with open(hist, encoding="utf-8") as f:
        assert f.read() == whole
    assert os.path.isfile(os.path.join(run, "summary.json"))


@pytest.mark.parametrize("content", ["", "num_train_iter: 4\nnet: [cnn", None], ids=["empty", "partial", "missing"])
def test_a_resume_without_a_readable_config_yaml_is_refused(finished_run, digits_yaml, tmp_path, capsys, content):
    run = copy_run(finished_run, tmp_path)
    os.remove(os.path.join(run, "summary.json"))
    if content is None:
        os.remove(os.path.join(run, "config.yaml"))
    else:
        with open(os.path.join(run, "config.yaml"), "w", encoding="utf-8") as f:
            f.write(content)
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "semi", "--resume", "True", "--num_train_iter", "8"]
                + flags(digits_yaml, tmp_path / "saved", **FINISHED_FLAGS))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"semilearn train: error: run {run} has "), err[0]
    assert "config.yaml" in err[0] and "--load_path" in err[0]
    assert tree(tmp_path) == before


def test_a_kill_during_the_history_rewrite_loses_nothing(finished_run, tmp_path, monkeypatch):
    """The resume's rewrite of eval_history.jsonl goes to a temporary file renamed over the
    old one: interrupted before the rename (here: the rename fails, as a kill at that point
    would stop it), the history is the old one, complete."""
    from semi_usb import run_folder

    run = copy_run(finished_run, tmp_path)
    hist = os.path.join(run, "eval_history.jsonl")
    with open(hist, encoding="utf-8") as f:
        whole = f.read()
    assert len(whole.splitlines()) == 2

    def killed(*a, **k):
        raise KeyboardInterrupt  # stands for the kill: nothing after this point runs

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        run_folder.trim_history(run, 2)
    monkeypatch.undo()
    with open(hist, encoding="utf-8") as f:
        assert f.read() == whole
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]  # the temporary file removed
    run_folder.trim_history(run, 2)
    with open(hist, encoding="utf-8") as f:
        assert f.read() == whole.splitlines(keepends=True)[0]


# ------------------------------------------------------------------ image folders

def test_the_image_folder_cache_follows_files_moved_between_classes(small_folder):
    """Moving an image between class folders leaves data_dir/train's mtime as it was; the
    cache is keyed by the files' paths, sizes and mtimes, so it is rebuilt and the labels
    follow the file."""
    from semi_usb.datasets import _cached_split

    images, write = _cached_split(str(small_folder), "train", 32)
    write()
    cache = small_folder / ".semi_usb_train_32.npz"
    assert cache.is_file() and images.targets.tolist() == [0, 0, 0, 1, 1, 1]
    moved = images.data[0].copy()  # a/a_0.png
    train_mtime = os.stat(small_folder / "train").st_mtime_ns
    os.rename(small_folder / "train" / "a" / "a_0.png", small_folder / "train" / "b" / "a_0.png")
    assert os.stat(small_folder / "train").st_mtime_ns == train_mtime  # what the old check looked at
    again, write = _cached_split(str(small_folder), "train", 32)
    assert again.targets.tolist() == [0, 0, 1, 1, 1, 1]
    import numpy as np

    assert np.array_equal(again.data[2], moved)  # b's files sorted by name: a_0.png first
    write()
    cached, _ = _cached_split(str(small_folder), "train", 32)  # from the rebuilt cache
    assert cached.targets.tolist() == [0, 0, 1, 1, 1, 1] and np.array_equal(cached.data, again.data)


# ------------------------------------------------------------------ bad values: one line, exit 2, nothing written

def _gpu_flag() -> list:
    import torch

    return ["--gpu", str(max(3, torch.cuda.device_count()))]


BAD_VALUES = [
    ("threshold-above-1", ["--p_cutoff", "1.5"], "p_cutoff must be in [0, 1], got 1.5"),
    ("negative-plce-weight", ["--semi_plce_alpha", "-0.4"], "semi_plce_alpha must be >= 0, got -0.4"),
    ("bank-size-0", ["--semi_bank_size", "0"], "semi_bank_size must be >= 1, got 0"),
    ("negative-lr", ["--lr", "-0.03"], "lr must be > 0, got -0.03"),
    ("crop-ratio-above-1", ["--crop_ratio", "1.5"], "crop_ratio must be in (0, 1], got 1.5"),
    ("gpu-not-present", None, "is not present: this machine has"),
    ("save-name-climbs-out", ["--save_name", "../outside"], "save_name '../outside' must name a folder inside save_dir"),
    ("save-name-absolute", ["--save_name", "/tmp/elsewhere"], "save_name '/tmp/elsewhere' must name a folder inside"),
]


@pytest.mark.parametrize("extra,expected", [pytest.param(*c[1:], id=c[0]) for c in BAD_VALUES])
def test_a_value_out_of_range_is_one_line_exit_2_and_writes_nothing(digits_yaml, tmp_path, extra, expected):
    extra = _gpu_flag() if extra is None else extra
    (tmp_path / "runs").mkdir()
    before = tree(tmp_path)
    proc = subprocess.run(cli_train("semi", flags(digits_yaml, tmp_path / "runs") + extra), capture_output=True,
                          text=True, cwd=REPO)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("semilearn train: error: ") and expected in lines[0], lines[0]
    assert tree(tmp_path) == before


def cli_train(method: str, argv: list) -> list:
    from conftest import cli

    return cli("train", "--algorithm", method, *argv)


def test_every_numeric_key_has_a_declared_range_or_none():
    """USB's numeric keys and every registered algorithm's: a key added without a range in
    its SSL_Argument type (the plugin's algorithms) or an entry in semi_usb.ranges.RANGES
    (USB's keys) fails here; the plugin's keys are declared once, in their algorithm."""
    from semi_usb.config import BASE_KEYS, _usb_type
    from semi_usb.plugin import registries
    from semi_usb.ranges import RANGES

    numeric = {"int", "float", "number", "optional int", "optional float"}
    keys = {k.name for k in BASE_KEYS if getattr(k.type, "__name__", "") in numeric}
    declared, plugin = set(), set()
    for registry in registries():
        for name in registry.keys():
            for a in registry[name].get_argument():
                if getattr(_usb_type(a.type, a.default), "__name__", "") in numeric:
                    keys.add(a.name.lstrip("-"))
                if getattr(a.type, "range", None) is not None:
                    declared.add(a.name.lstrip("-"))
                if registry[name].__module__.startswith("semi_usb."):
                    plugin.add(a.name.lstrip("-"))
    assert len(keys) > 100 and len(declared) >= 18
    missing = sorted(keys - set(RANGES) - declared)
    assert not missing, f"numeric keys without a range (or an explicit None) in semi_usb/ranges.py: {missing}"
    assert not plugin & set(RANGES), f"plugin keys with a second range in semi_usb/ranges.py: {plugin & set(RANGES)}"
    assert {k for k in plugin if k in keys} <= declared  # every numeric key of the plugin's declares its range


@pytest.mark.parametrize("flag,value,expected", [
    ("--semi_bank_size", "0", "must be >= 1, got 0"), ("--semi_oheml_s", "1.5", "must be in [0, 1], got 1.5"),
    ("--acr_T", "0", "must be > 0, got 0.0"),
    ("--acr_class_vector", "sum", "invalid one of acr_code, presence, counts value: 'sum'"),
])
def test_usb_own_argparse_refuses_a_value_out_of_its_declared_range(capsys, flag, value, expected):
    """The range is part of the key's SSL_Argument type: USB's train.py, which adds the
    imbalanced algorithm's arguments to its parser as below (semilearn/lighting/config.py:142-143),
    refuses a bad value in one line, and takes a good one."""
    import argparse

    from semi_usb.plugin import registries

    parser = argparse.ArgumentParser(prog="train.py")
    for argument in registries()[1]["semi"].get_argument():
        parser.add_argument(argument.name, type=argument.type, default=argument.default, help=argument.help)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args([flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1] == f"train.py: error: argument {flag}: {expected}", err
    args = parser.parse_args(["--semi_bank_size", "64", "--semi_oheml_s", "0.5", "--acr_T", "2"])
    assert (args.semi_bank_size, args.semi_oheml_s, args.acr_T, args.semi_decay_step) == (64, 0.5, 2.0, 100)


@pytest.mark.parametrize("case", ["duplicate-key", "not-utf8"])
def test_a_bad_yaml_file_is_one_line_exit_2(digits_yaml, tmp_path, capsys, case):
    config = tmp_path / "bad.yaml"
    text = open(digits_yaml, encoding="utf-8").read()
    if case == "duplicate-key":
        config.write_text(text + "lr: 0.1\nlr: 0.2\n", encoding="utf-8")
        expected = f"config file {config} line "
        also = "duplicate key 'lr' (first on line"
    else:
        config.write_bytes(text.encode() + "name: caf\xe9\n".encode("latin-1"))
        expected, also = f"config file {config} is not UTF-8 text", "save it as UTF-8"
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "semi"] + flags(str(config), tmp_path / "runs"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert expected in err[0] and also in err[0], err[0]
    assert tree(tmp_path) == before


@pytest.mark.parametrize("case", ["one-class", "fake-image", "corrupt-image", "save-dir-is-a-file"])
def test_bad_data_or_save_dir_is_one_line_and_save_dir_is_unchanged(small_folder, digits_yaml, tmp_path, capsys, case):
    """Errors found after the run folder is claimed (the data is read then): the claimed
    folder, and the save_dir made for it, are removed again; no cache is left."""
    data, save_dir = small_folder, tmp_path / "runs" / "deeper"
    extra = ["--dataset", "imagefolder", "--data_dir", str(data), "--num_classes", "2", "--num_labels", "2",
             "--lb_imb_ratio", "1", "--ulb_imb_ratio", "1", "--img_size", "32"]
    if case == "one-class":
        import shutil

        for split in ("train", "test"):
            shutil.rmtree(data / split / "b")
        extra[extra.index("--num_classes") + 1] = "1"
        expected = "num_classes must be >= 2, got 1"
    elif case == "fake-image":
        (data / "train" / "b" / "fake.png").write_text("not an image", encoding="utf-8")
        expected = f"{data / 'train' / 'b' / 'fake.png'} is not a readable image (UnidentifiedImageError"
    elif case == "corrupt-image":
        path = data / "train" / "b" / "b_1.png"
        path.write_bytes(path.read_bytes()[:60])
        expected = f"{path} is not a readable image"
    else:
        (tmp_path / "runs").write_text("a file", encoding="utf-8")
        save_dir = tmp_path / "runs"
        expected = f"cannot create the run folder {save_dir / 'run'}"
    before = tree(tmp_path)
    code = main(["train", "--algorithm", "fixmatch"] + flags(digits_yaml, save_dir) + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert expected in err[0], err[0]
    assert tree(tmp_path) == before  # no run folder, no save_dir, no cache


def test_a_one_class_image_folder_is_refused_by_the_loader(small_folder):
    import argparse

    from semi_usb.datasets import ImageSet, build_ssl_datasets, read_image_folder
    from semi_usb.errors import DataError

    import shutil

    shutil.rmtree(small_folder / "train" / "b")
    train = read_image_folder(str(small_folder / "train"), 32)
    with pytest.raises(DataError, match="needs at least 2 class folders"):
        build_ssl_datasets(argparse.Namespace(num_classes=1), "fixmatch", train, ImageSet(train.data, train.targets,
                                                                                          train.classes), "imagefolder")


# ------------------------------------------------------------------ archives, idx files, unwritable outputs

def test_a_tar_member_climbing_out_is_refused(small_folder, tmp_path, capsys):
    import tarfile

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(small_folder / "train", arcname="train")
        tar.add(small_folder / "test", arcname="test")
        tar.add(small_folder / "train" / "a" / "a_0.png", arcname="../escaped.png")
    before = tree(tmp_path)
    code = main(["data", "import", str(archive), "--data_dir", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{archive} holds a member that would be written outside the import folder" in err[0], err[0]
    assert tree(tmp_path) == before and not os.path.exists(tmp_path.parent / "escaped.png")


def test_a_truncated_archive_is_one_line(small_folder, tmp_path, capsys):
    import tarfile

    archive = tmp_path / "cut.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(small_folder, arcname="imgs")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    before = tree(tmp_path)
    code = main(["data", "import", str(archive), "--data_dir", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{archive} is not a readable .tar/.tar.gz archive" in err[0], err[0]
    assert tree(tmp_path) == before


def _idx(path, array) -> None:
    import struct

    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


def test_a_truncated_idx_file_is_one_line_and_nothing_is_made(tmp_path, capsys):
    """Real digits as idx files; the test images file cut short."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = (d.images * 15).astype(np.uint8), d.target.astype(np.uint8)
    src = tmp_path / "idx"
    src.mkdir()
    _idx(src / "train-images-idx3-ubyte", images[:100])
    _idx(src / "train-labels-idx1-ubyte", labels[:100])
    _idx(src / "t10k-images-idx3-ubyte", images[100:150])
    _idx(src / "t10k-labels-idx1-ubyte", labels[100:150])
    cut = src / "t10k-images-idx3-ubyte"
    cut.write_bytes(cut.read_bytes()[:-100])
    before = tree(tmp_path)
    code = main(["data", "import-idx", str(src), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{cut} is truncated or corrupt" in err[0], err[0]
    assert tree(tmp_path) == before  # no half-written image folder


def test_eval_and_report_into_an_unwritable_out_are_one_line(finished_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    before = tree(tmp_path)
    ckpt = os.path.join(finished_run, "latest_model.pth")
    assert main(["eval", "--checkpoint", ckpt, "--out", str(blocker / "eval.json")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"semilearn eval: error: cannot write {blocker / 'eval.json'}"), err
    assert main(["report", finished_run, "--out", str(blocker / "report")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1 and str(blocker / "report") in err[0], err
    assert tree(tmp_path) == before


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_previous(finished_run, tmp_path):
    """A real full disk: a 2 MiB tmpfs (needs root and mount) holding the run's checkpoint;
    writing a bigger one fails with ENOSPC: one-line CheckpointError, old file intact."""
    import torch

    from semi_usb.compat import trainer
    from semi_usb.errors import CheckpointError

    with tmpfs(tmp_path / "small", "2m") as mnt:
        old = mnt / "latest_model.pth"
        import shutil

        torch.save({"model": {"w": torch.zeros(100_000)}}, old)  # 400 kB
        before = old.read_bytes()

        class Alg:
            def get_save_dict(self):
                return {"model": {"w": torch.zeros(600_000)}}  # 2.4 MB: does not fit

            def print_fn(self, msg):
                raise AssertionError("reported as saved")

        with pytest.raises(CheckpointError) as err:
            trainer._save_model(Alg(), "latest_model.pth", str(mnt))
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"cannot write checkpoint {old} (No space left on device)")
        assert "previous checkpoint is intact" in msg
        assert old.read_bytes() == before and os.listdir(mnt) == ["latest_model.pth"]
        del shutil


# ------------------------------------------------------------------ compare

def test_compare_validates_every_run_before_the_first_starts(tmp_path, capsys):
    save_dir = tmp_path / "cmp"
    code = main(["compare", "--algorithms", "fixmatch,semi", "--setting", "digits_lb40_10_ulb90_10", "--seeds", "0,1",
                 "--config", QUICKSTART, "--save_dir", str(save_dir),
                 "--num_train_iters", "6"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "unknown key 'num_train_iters' in the command line (did you mean 'num_train_iter'?)" in err[0]
    assert not save_dir.exists()  # no run started, no log folder


@pytest.mark.parametrize("flag,expected", [("--seed", "--seed is set by compare for each run: use --seeds"),
                                           ("--save_name", "--save_name is set by compare for each run: use --save_dir")])
def test_compare_refuses_a_key_it_sets_per_run(tmp_path, capsys, flag, expected):
    """`--seed 3` is not taken for `--seeds` (no prefix matching) nor passed to every run,
    which would train seed 3 three times under the names of seeds 0, 1 and 2."""
    code = main(["compare", "--algorithms", "fixmatch", "--setting", "digits_lb40_10_ulb90_10", "--config",
                 QUICKSTART, "--save_dir", str(tmp_path / "cmp"),
                 flag, "3"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert code == 2 and err == [f"semilearn compare: error: {expected}"], err
    assert not (tmp_path / "cmp").exists()
