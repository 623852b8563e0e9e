"""``ulb_distribution``: SimPro's ``middle`` and ``head-tail`` unlabeled distributions
(LeapLabTHU/SimPro, SimPro/dataset/cifar.py, make_imb_data's flag_LT 3 and 4). Class counts
exactly (by hand from SimPro's orders), the images drawn as USB draws them, real quick-start
runs, the setting name, and bad values."""
from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import QUICKSTART, digits_flags, error_lines, only_run, run_summary
from semi_usb.cli import main
from semi_usb.naming import parse_setting, summary_setting
from semi_usb.published import canonical_setting, lookup
from semi_usb.ulb_distribution import class_order, permuted_counts

# USB's make_imbalance_data(4000, 10, 100): int(4000 * 0.01 ** (k / 9)), the last int(4000 / 100)
CIFAR10_M4000_G100 = [4000, 2397, 1437, 861, 516, 309, 185, 111, 66, 40]
# The quick start's unlabeled counts: make_imbalance_data(90, 10, 10)
DIGITS_M90_G10 = [90, 69, 53, 41, 32, 25, 19, 15, 11, 9]


def test_class_orders_are_simpro_s():
    # SimPro: idx_centric = list(range(0, C, 2))[::-1] + list(range(1, C, 2));
    # idx_off_centric = list(range(1, C, 2)) + list(range(0, C, 2))[::-1]
    assert class_order("middle", 10) == [8, 6, 4, 2, 0, 1, 3, 5, 7, 9]
    assert class_order("head-tail", 10) == [1, 3, 5, 7, 9, 8, 6, 4, 2, 0]
    assert class_order("middle", 5) == [4, 2, 0, 1, 3]
    assert class_order("head-tail", 5) == [1, 3, 4, 2, 0]
    assert class_order("usb", 4) == [0, 1, 2, 3]


def test_class_counts_cifar10_and_cifar100():
    assert permuted_counts(CIFAR10_M4000_G100, "middle") == [66, 185, 516, 1437, 4000, 2397, 861, 309, 111, 40]
    assert permuted_counts(CIFAR10_M4000_G100, "head-tail") == [2397, 861, 309, 111, 40, 66, 185, 516, 1437, 4000]
    from semi_usb.datasets import unlabeled_per_class

    assert unlabeled_per_class(4000, 10, 100, "middle") == [66, 185, 516, 1437, 4000, 2397, 861, 309, 111, 40]
    assert unlabeled_per_class(4000, 10, 100, "usb") == CIFAR10_M4000_G100
    c100 = unlabeled_per_class(300, 100, 10, "middle")
    assert max(c100) == 300 and c100.index(300) == 49 and sorted(c100) == sorted(unlabeled_per_class(300, 100, 10))


@pytest.mark.parametrize("dist,expected", [
    ("middle", [11, 19, 32, 53, 90, 69, 41, 25, 15, 9]),
    ("head-tail", [69, 41, 25, 15, 9, 11, 19, 32, 53, 90]),
])
def test_quick_start_trains_with_the_distribution(tmp_path, dist, expected):
    """The quick start (digits, M1 = 90, gamma_u = 10) trains with --ulb_distribution; its
    unlabeled set has exactly SimPro's counts, the labeled set USB's, and the setting name and
    the summary carry the distribution."""
    assert main(["train", "--algorithm", "semi", "--ulb_distribution", dist]
                + digits_flags(tmp_path, iters=4, semi_warmup_iter=2)) == 0
    run = only_run(tmp_path)
    s = run_summary(run)
    assert s["ulb_class_counts"] == expected
    assert s["lb_class_counts"] == [40, 30, 23, 18, 14, 11, 8, 6, 5, 4]
    assert s["ulb_distribution"] == dist
    assert s["setting"] == f"digits_lb40_10_ulb90_10_{dist}"
    assert summary_setting(s) == f"digits_lb40_10_ulb90_10_{dist}"
    assert s["iterations_done"] == 4


def test_same_images_as_usb_would_draw():
    """Each class's unlabeled images are the first ones USB's own split takes from that class's
    seeded shuffle: where the middle count is below the consistent one they are a prefix of the
    consistent split's images of that class, and the labeled images are the same."""
    import argparse

    from semi_usb import compat
    from semi_usb.datasets import load_digits_sets

    compat.apply()
    from semilearn.datasets import utils

    train, _ = load_digits_sets()
    targets = np.asarray(train.targets)

    def draw(dist):
        args = argparse.Namespace(dataset="digits", num_labels=40, lb_imb_ratio=10, ulb_imb_ratio=10, seed=0,
                                  ulb_distribution=dist)
        np.random.seed(0)
        return utils.sample_labeled_unlabeled_data(args, train.data, targets, 10, 40, 90, 10, 10, load_exist=False)

    lb_usb, ulb_usb = draw("usb")
    lb_mid, ulb_mid = draw("middle")
    assert np.array_equal(lb_usb, lb_mid)
    assert np.bincount(targets[ulb_usb], minlength=10).tolist() == DIGITS_M90_G10
    mid = np.bincount(targets[ulb_mid], minlength=10).tolist()
    assert mid == [11, 19, 32, 53, 90, 69, 41, 25, 15, 9]
    for c in range(10):
        usb_c, mid_c = ulb_usb[targets[ulb_usb] == c], ulb_mid[targets[ulb_mid] == c]
        n = min(len(usb_c), len(mid_c))
        assert np.array_equal(usb_c[:n], mid_c[:n]), c
    assert len(set(ulb_mid) & set(lb_mid)) == 0


@pytest.mark.parametrize("flags,message", [
    (["--ulb_distribution", "centre"], "ulb_distribution must be one of usb, middle, head-tail, got 'centre'"),
    (["--ulb_distribution", "middle", "--ulb_imb_ratio", "-10"], "ulb_distribution middle needs ulb_imb_ratio > 1"),
    (["--ulb_distribution", "head-tail", "--ulb_imb_ratio", "1"], "ulb_distribution head-tail needs ulb_imb_ratio > 1"),
    (["--ulb_distribution", "middle", "--ulb_num_labels", "None", "--ulb_imb_ratio", "1"],
     "ulb_distribution middle needs ulb_num_labels"),
])
def test_bad_values_one_line_exit_2(tmp_path, capsys, flags, message):
    assert main(["train", "--algorithm", "fixmatch"] + flags + digits_flags(tmp_path)) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("semilearn train: error: ") and message in err[0], err
    assert not os.listdir(tmp_path)


def test_setting_names_with_the_distribution():
    """A setting name with the suffix parses to its keys (compare passes them to each run);
    published numbers of USB's distribution never match it."""
    assert parse_setting("cifar10_lb500_100_ulb4000_100_middle") == {
        "dataset": "cifar10", "num_labels": "500", "lb_imb_ratio": "100", "ulb_num_labels": "4000",
        "ulb_imb_ratio": "100", "ulb_distribution": "middle"}
    assert "ulb_distribution" not in parse_setting("cifar10_lb500_100_ulb4000_100")
    assert parse_setting("cifar10_lb500_100_ulb4000_100_head-tail")["ulb_distribution"] == "head-tail"
    assert canonical_setting("cifar10_lb500_100_ulb4000_100.0_head-tail") == "cifar10_lb500_100_ulb4000_100_head-tail"
    assert lookup("fixmatch", "cifar10_lb500_100_ulb4000_100").value == 72.41
    assert lookup("fixmatch", "cifar10_lb500_100_ulb4000_100_middle") is None


def test_compare_plans_the_distribution_from_the_setting_name(tmp_path):
    """`semilearn compare --setting <...>_middle --config BASE` passes --ulb_distribution to each
    run, whose configuration then builds (and is checked) with it."""
    from semi_usb.grid import check_existing, plan

    base = QUICKSTART
    (run,) = plan(["semi"], "digits_lb40_10_ulb90_10_middle", [0], str(tmp_path / "none"), base, str(tmp_path), [])
    assert run["name"] == "fixmatch_semi_digits_lb40_10_ulb90_10_middle_0"
    assert "--ulb_distribution=middle" in run["flags"] and "--ulb_imb_ratio=10" in run["flags"]
    check_existing([run])
    from semi_usb.config import build_args, parse_flags

    args = build_args("semi", base, parse_flags(run["flags"]), warn=lambda m: None)
    assert args.ulb_distribution == "middle"
