"""`data_pipeline: gpu` keeps USB's splits, samplers and batch layout (checked on CPU)."""
from __future__ import annotations

import torch

from conftest import build_on_digits as build
from semi_usb import device_loader


def test_device_loaders_keep_usb_order_keys_and_eval_pixels():
    alg = build("fixmatch")
    usb = dict(alg.loader_dict)
    for name in ("train_lb", "train_ulb"):
        usb[name].sampler.set_epoch(3)
    ref_lb, ref_ulb, ref_eval = next(iter(usb["train_lb"])), next(iter(usb["train_ulb"])), next(iter(usb["eval"]))
    device_loader.install(alg, torch.device("cpu"))
    dev = alg.loader_dict
    assert dev["train_lb"].sampler is usb["train_lb"].sampler  # USB's sampler, same epoch seeding
    lb, ulb, ev = next(iter(dev["train_lb"])), next(iter(dev["train_ulb"])), next(iter(dev["eval"]))
    assert set(lb) == set(ref_lb) and set(ulb) == set(ref_ulb)
    assert torch.equal(lb["idx_lb"], ref_lb["idx_lb"]) and torch.equal(lb["y_lb"], ref_lb["y_lb"])
    assert torch.equal(ulb["idx_ulb"], ref_ulb["idx_ulb"])
    for key in ("x_lb",):
        assert lb[key].shape == ref_lb[key].shape and lb[key].dtype == ref_lb[key].dtype
    assert ulb["x_ulb_s"].shape == ref_ulb["x_ulb_s"].shape
    # evaluation has no randomness: the same pixels as USB's ToTensor + Normalize
    assert torch.allclose(ev["x_lb"], ref_eval["x_lb"], atol=1e-5)
    assert torch.equal(ev["y_lb"], ref_eval["y_lb"])
    # the weak view differs per sample but stays a crop/flip of the image (same value range)
    assert not torch.equal(ulb["x_ulb_w"], ulb["x_ulb_s"])
    assert abs(ulb["x_ulb_w"].mean().item() - ref_ulb["x_ulb_w"].mean().item()) < 0.2


def test_training_with_the_fast_path(tmp_path):
    """Device pipeline + bf16 autocast + channels_last train (CPU autocast here)."""
    import os

    from conftest import digits_flags, only_run, run_summary
    from semi_usb.cli import main

    assert main(["train", "--algorithm", "semi", "--data_pipeline", "gpu", "--semi_usb_bf16", "True",
                 "--semi_usb_channels_last", "True"] + digits_flags(tmp_path, iters=4, semi_warmup_iter=1)) == 0
    run = only_run(tmp_path)
    assert run_summary(run)["iterations_done"] == 4
    # the run was fed by the device-side loaders, not USB's (the runner logs what it uses)
    log = open(os.path.join(run, "log.txt")).read()
    assert "data pipeline: train_lb on-device, train_ulb on-device, eval on-device" in log
