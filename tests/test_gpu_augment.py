"""Tests of semi_usb.gpu_augment against USB's PIL augmentations on real CIFAR-10 images.

USB = semilearn 0.3.2, ``semilearn.datasets.augmentation.randaugment`` (PIL)
and the torchvision weak transform of ``semilearn/datasets/cv_datasets/cifar.py``.
All comparisons run on CPU; the CUDA-only tests (names ending in ``cuda``; run by
``benchmarks/gpu_check.sh``) repeat the op and pipeline comparisons on the GPU.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import stats

from semi_usb.gpu_augment import (
    CUTOUT_FILL,
    NO_COLOR_OP_NAMES,
    OP_NAMES,
    OP_RANGES,
    GPUAugment,
    RandAugmentParams,
    WeakParams,
    apply_op,
    apply_rand_augment,
    cutout,
    normalize,
    rand_augment,
    sample_rand_augment_params,
    sample_weak_params,
    strong_view,
    weak_view,
)

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 64
N_DRAWS = 20_000

ALPHA = 1e-3  # significance level of the distribution tests (all draws are seeded: deterministic)


def _chi2_crit(df: int) -> float:
    return float(stats.chi2.ppf(1.0 - ALPHA, df))


def _cifar_tar() -> Path:
    env = os.environ.get("SEMI_USB_CIFAR_TAR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def cifar():
    """~64 real CIFAR-10 training images (6-7 per class): list of PIL RGB images and (N, 3, 32, 32) uint8."""
    path = _cifar_tar()
    if not path.is_file():
        pytest.skip(f"CIFAR-10 JPEG archive not found at {path} (set SEMI_USB_CIFAR_TAR to its path)")
    per_class = -(-N_IMAGES // 10)
    picked = {}
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            parts = m.name.split("/")
            if not (m.isfile() and len(parts) == 3 and parts[0] == "train" and parts[2].endswith(".jpg")):
                continue
            lst = picked.setdefault(parts[1], [])
            if len(lst) < per_class:
                data = tf.extractfile(m).read()
                lst.append(Image.open(io.BytesIO(data)).convert("RGB"))
    # interleave the classes, keep N_IMAGES
    imgs = [lst[i] for i in range(per_class) for _, lst in sorted(picked.items()) if i < len(lst)][:N_IMAGES]
    assert len(imgs) == N_IMAGES and all(im.size == (32, 32) for im in imgs)
    return imgs, _to_tensor(imgs)


@pytest.fixture(scope="session")
def ra():
    # imports the whole semilearn package (aim, wandb, timm): a few seconds
    from semilearn.datasets.augmentation import randaugment

    return randaugment


def _to_tensor(imgs) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1) for im in imgs])


def _diff(a: torch.Tensor, b: torch.Tensor):
    d = (a.to(torch.int32) - b.to(torch.int32)).abs().to(torch.float64)
    return d.mean().item(), d.max().item()


# ---------------------------------------------------------------------------
# Single ops against USB's PIL functions
# ---------------------------------------------------------------------------

# Bound on the mean absolute difference (grey levels) between our op and USB's
# PIL op on the 64 CIFAR images, each with its own magnitude spanning the op's
# USB range.  Measured: 0 for every op (bit-exact) with Pillow 13 / torch 2.x
# on x86-64 CPU.  Integer-only ops must be exact; ops computed in floating
# point (ImageEnhance blends and SMOOTH in float32, rotation's sin/cos in
# float64) get 1e-3 of slack (~200 of 196608 values off by one level) against
# FMA contraction / libm ulp differences on other platforms.
MAD_BOUND = {
    "AutoContrast": 0.0,
    "Brightness": 1e-3,
    "Color": 1e-3,
    "Contrast": 1e-3,
    "Equalize": 0.0,
    "Identity": 0.0,
    "Posterize": 0.0,
    "Rotate": 1e-3,
    "Sharpness": 1e-3,
    "ShearX": 0.0,
    "ShearY": 0.0,
    "Solarize": 0.0,
    "TranslateX": 0.0,
    "TranslateY": 0.0,
    "Invert": 0.0,
}
assert set(MAD_BOUND) == set(OP_NAMES) | {"Invert"}


def _magnitudes(name: str, n: int) -> torch.Tensor:
    """n float32 magnitudes spanning USB's range [lo, hi) (both ends included up to the last float32 below 1)."""
    lo, hi = OP_RANGES.get(name, (0.0, 1.0))
    u = torch.linspace(0.0, 1.0, n, dtype=torch.float32)
    u[-1] = 1.0 - 2.0**-24  # largest value of U[0, 1) in float32
    return lo + (hi - lo) * u


@pytest.mark.parametrize("name", list(OP_NAMES) + ["Invert"])
def test_op_matches_usb_pil(name, cifar, ra):
    imgs, x = cifar
    usb_fn = getattr(ra, name)
    assert name == "Invert" or (usb_fn, *OP_RANGES[name]) in ra.augment_list()
    mags = _magnitudes(name, len(imgs))  # one magnitude per sample, batched
    ours = apply_op(x, name, mags)
    ref = _to_tensor([usb_fn(im, float(v)) for im, v in zip(imgs, mags)])
    assert ours.dtype == torch.uint8 and ours.shape == x.shape
    mad, mx = _diff(ours, ref)
    assert mad <= MAD_BOUND[name], f"{name}: MAD {mad:.5f} > {MAD_BOUND[name]} (max {mx})"
    if MAD_BOUND[name] == 0.0:
        assert mx == 0
    else:
        assert mx <= 1
    # scalar magnitude (same value for the whole batch)
    v = float(mags[len(mags) // 3])
    ours = apply_op(x, name, v)
    ref = _to_tensor([usb_fn(im, v) for im in imgs])
    mad, _ = _diff(ours, ref)
    assert mad <= MAD_BOUND[name], f"{name}(v={v}): MAD {mad:.5f}"


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Sharpness", "Equalize"])
def test_op_matches_usb_pil_non_square(name, cifar, ra):
    imgs, x = cifar
    crops = [im.crop((3, 0, 27, 32)) for im in imgs[:16]]  # 24 wide x 32 high
    xc = _to_tensor(crops)
    assert xc.shape[-2:] == (32, 24)
    mags = _magnitudes(name, len(crops))
    ours = apply_op(xc, name, mags)
    ref = _to_tensor([getattr(ra, name)(im, float(v)) for im, v in zip(crops, mags)])
    mad, _ = _diff(ours, ref)
    assert mad <= MAD_BOUND[name], f"{name}: MAD {mad:.5f}"


def test_float_input_matches_uint8(cifar):
    _, x = cifar
    xf = x.float() / 255.0
    for name in OP_NAMES:
        mags = _magnitudes(name, x.shape[0])
        a = apply_op(x, name, mags)
        b = apply_op(xf, name, mags)
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a.float() / 255.0, rtol=0, atol=1e-6)


def test_cutout_matches_usb(cifar, ra, monkeypatch):
    """Same fraction and same np.random draws -> same box and colour as USB's Cutout/CutoutAbs."""
    imgs, x = cifar
    n = len(imgs)
    fracs = torch.linspace(0.0, 0.5, n + 1, dtype=torch.float64)[1:].clone()
    fracs[-1] = 0.5 - 1e-9
    fracs[0] = 0.0  # v <= 0: unchanged
    rs = np.random.RandomState(1234)
    centres = rs.uniform(32, 1, size=(n, 2))  # what np.random.uniform(w) returns in USB: in (1, 32]
    centres[1] = (1.0 + 1e-12, 1.0 + 1e-12)
    centres[2] = (32.0, 32.0)
    queue = []
    monkeypatch.setattr(np.random, "uniform", lambda *a, **k: queue.pop(0))
    ref = []
    for im, f, (cx, cy) in zip(imgs, fracs.tolist(), centres.tolist()):
        queue[:] = [cx, cy]
        ref.append(ra.Cutout(im, f))
    ref = _to_tensor(ref)
    ours = cutout(x, fracs, torch.from_numpy(centres[:, 0]), torch.from_numpy(centres[:, 1]))
    mad, mx = _diff(ours, ref)
    assert mx == 0, f"cutout MAD {mad}"
    assert torch.equal(ours[0], x[0])
    painted = (ours != x).any(dim=1)
    assert painted[1:].any(dim=(1, 2)).all()
    fill = torch.tensor(CUTOUT_FILL, dtype=torch.uint8).view(3, 1)
    assert (ours[5][:, painted[5]] == fill).all()


def _pipeline_reference(ra, imgs, params: RandAugmentParams, monkeypatch):
    """USB's RandAugment.__call__ body with the draws replaced by ``params``."""
    ops = {name: getattr(ra, name) for name in OP_NAMES}
    queue = []
    monkeypatch.setattr(np.random, "uniform", lambda *a, **k: queue.pop(0))
    out = []
    for i, im in enumerate(imgs):
        for k in range(params.op_index.shape[1]):
            im = ops[OP_NAMES[int(params.op_index[i, k])]](im, float(params.magnitude[i, k]))
        queue[:] = [float(params.cutout_x[i]), float(params.cutout_y[i])]
        im = ra.Cutout(im, float(params.cutout_frac[i]))
        out.append(im)
    return _to_tensor(out)


def test_rand_augment_pipeline_matches_usb(cifar, ra, monkeypatch):
    """Whole RandAugment (3 ops + Cutout) given the same draws: every op in every slot, and random draws."""
    imgs, x = cifar
    n = len(imgs)
    g = torch.Generator().manual_seed(7)
    rnd = sample_rand_augment_params(n, 3, generator=g)
    # deterministic op assignment covering all 14 ops in each of the 3 slots
    idx = (torch.arange(n).view(n, 1) + torch.tensor([0, 5, 9]).view(1, 3)) % len(OP_NAMES)
    lo = torch.tensor([OP_RANGES[nm][0] for nm in OP_NAMES])
    hi = torch.tensor([OP_RANGES[nm][1] for nm in OP_NAMES])
    u = torch.rand(n, 3, generator=g)
    covering = rnd._replace(op_index=idx, magnitude=lo[idx] + (hi[idx] - lo[idx]) * u)
    for params in (covering, rnd):
        ours = apply_rand_augment(x, params)
        ref = _pipeline_reference(ra, imgs, params, monkeypatch)
        mad, mx = _diff(ours, ref)
        assert mad <= 1e-3, f"pipeline MAD {mad} max {mx}"  # measured: 0 (bit-exact) on x86-64 CPU


def test_weak_view_matches_torchvision(cifar):
    """Reflect pad 4 + crop at the same offsets + hflip == torchvision on PIL images, exactly."""
    imgs, x = cifar
    n = len(imgs)
    params = sample_weak_params(n, padding=4, generator=torch.Generator().manual_seed(3))
    # force the extreme offsets and both flips to appear
    top, left, flip = params.top.clone(), params.left.clone(), params.flip.clone()
    top[:4], left[:4], flip[:4] = torch.tensor([0, 8, 0, 8]), torch.tensor([0, 8, 8, 0]), torch.tensor([1, 0, 1, 0]).bool()
    params = WeakParams(top, left, flip)
    ours = weak_view(x, padding=4, params=params)
    ref = []
    for im, t, l, f in zip(imgs, top.tolist(), left.tolist(), flip.tolist()):
        y = TF.crop(TF.pad(im, 4, padding_mode="reflect"), t, l, 32, 32)
        ref.append(TF.hflip(y) if f else y)
    mad, mx = _diff(ours, _to_tensor(ref))
    assert mx == 0, f"weak view MAD {mad}"
    # dtype-agnostic (pure gather)
    torch.testing.assert_close(weak_view(x.float() / 255, params=params), ours.float() / 255, rtol=0, atol=0)
    # strong_view = the same crop/flip followed by RandAugment
    rap = sample_rand_augment_params(n, 3, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(strong_view(x, weak_params=params, ra_params=rap), apply_rand_augment(ours, rap))


def test_weak_sampling_distribution():
    p = sample_weak_params(N_DRAWS, padding=4, generator=torch.Generator().manual_seed(11))
    for off in (p.top, p.left):
        assert int(off.min()) == 0 and int(off.max()) == 8
        counts = torch.bincount(off, minlength=9).double()
        exp = N_DRAWS / 9
        chi2 = ((counts - exp) ** 2 / exp).sum().item()
        assert chi2 < _chi2_crit(8), chi2
    frac = p.flip.double().mean().item()
    assert abs(frac - 0.5) < 4 * (0.25 / N_DRAWS) ** 0.5


# ---------------------------------------------------------------------------
# Sampling distribution against USB's RandAugment.__call__
# ---------------------------------------------------------------------------


def _usb_draws(ra, n, monkeypatch, exclude_color_aug=False):
    """Run USB's real RandAugment(3, 5).__call__ n times with recording stub ops."""
    rec, cut = [], []

    def stub(name):
        def op(img, v):
            rec.append((name, v))
            return img

        return op

    aug = ra.RandAugment(3, 5, exclude_color_aug=exclude_color_aug)
    aug.augment_list = [(stub(op.__name__), lo, hi) for op, lo, hi in aug.augment_list]
    monkeypatch.setattr(ra, "Cutout", lambda img, v: cut.append(v) or img)
    random.seed(0)
    for _ in range(n):
        aug(None)
    return rec, np.array(cut)


def _same_distribution(a: np.ndarray, b: np.ndarray) -> bool:
    """Two-sample Kolmogorov-Smirnov test does not reject at ALPHA."""
    return stats.ks_2samp(a, b).pvalue > ALPHA


def _same_frequencies(ca: np.ndarray, cb: np.ndarray) -> bool:
    """Two-sample chi-square (contingency) test on category counts does not reject at ALPHA."""
    keep = (ca + cb) >= 10
    return stats.chi2_contingency(np.stack([ca[keep], cb[keep]])).pvalue > ALPHA


def _uniform_chi2(u: np.ndarray, bins: int = 10) -> float:
    counts = np.histogram(u, bins=bins, range=(0.0, 1.0))[0]
    exp = len(u) / bins
    return float(((counts - exp) ** 2 / exp).sum())


@pytest.mark.parametrize("exclude_color_aug", [False, True])
def test_rand_augment_sampling_matches_usb(ra, monkeypatch, exclude_color_aug):
    names = NO_COLOR_OP_NAMES if exclude_color_aug else OP_NAMES
    usb_rec, usb_cut = _usb_draws(ra, N_DRAWS, monkeypatch, exclude_color_aug)
    assert len(usb_rec) == 3 * N_DRAWS  # USB applies exactly 3 ops per image (with replacement)
    assert [op.__name__ for op, _, _ in ra.RandAugment(3, 5, exclude_color_aug).augment_list] == list(names)
    p = sample_rand_augment_params(
        N_DRAWS, 3, generator=torch.Generator().manual_seed(5), exclude_color_aug=exclude_color_aug
    )
    assert p.op_index.shape == (N_DRAWS, 3) and p.magnitude.shape == (N_DRAWS, 3)
    ours_ops = [OP_NAMES[i] for i in p.op_index.flatten().tolist()]
    ours_mag = p.magnitude.flatten().double().numpy()

    # op frequencies: uniform over the op list, for USB and for us, and USB vs us
    k = len(names)
    cu, co = Counter(nm for nm, _ in usb_rec), Counter(ours_ops)
    assert set(co) == set(names) and set(cu) == set(names)
    usb_counts = np.array([cu[nm] for nm in names], dtype=float)
    our_counts = np.array([co[nm] for nm in names], dtype=float)
    exp = 3 * N_DRAWS / k
    assert ((usb_counts - exp) ** 2 / exp).sum() < _chi2_crit(k - 1)
    assert ((our_counts - exp) ** 2 / exp).sum() < _chi2_crit(k - 1)
    assert _same_frequencies(usb_counts, our_counts)
    assert np.abs(our_counts / (3 * N_DRAWS) - 1 / k).max() < 0.006  # max deviation of a frequency

    # magnitudes: per op, within [lo, hi), uniform, and same distribution as USB's
    usb_vals = {}
    for nm, v in usb_rec:
        usb_vals.setdefault(nm, []).append(v)
    for j, nm in enumerate(names):
        lo, hi = OP_RANGES[nm]
        ours_v = ours_mag[np.array([o == nm for o in ours_ops])]
        usb_v = np.array(usb_vals[nm])
        for vals in (ours_v, usb_v):
            assert vals.min() >= lo and vals.max() < hi
            assert _uniform_chi2((vals - lo) / (hi - lo)) < _chi2_crit(9), nm
        assert _same_distribution(ours_v, usb_v), nm
        if nm == "Posterize":  # int(v): bits 4..7 with probability 1/4 each
            for vals in (ours_v, usb_v):
                c = np.bincount(np.maximum(1, vals.astype(int)), minlength=9)[4:8].astype(float)
                assert c.sum() == len(vals)
                assert (((c - len(vals) / 4) ** 2) / (len(vals) / 4)).sum() < _chi2_crit(3)

    # cutout fraction: U[0, 0.5)
    ours_cut = p.cutout_frac.double().numpy()
    for vals in (ours_cut, usb_cut):
        assert vals.min() >= 0.0 and vals.max() < 0.5
        assert _uniform_chi2(vals / 0.5) < _chi2_crit(9)
    assert _same_distribution(ours_cut, usb_cut)


def test_cutout_box_distribution_matches_usb(ra):
    """Boxes painted by USB's real Cutout (np.random) vs ours (sampled params), on blank images."""
    n_usb, n_ours = 4000, N_DRAWS
    black = Image.new("RGB", (32, 32), 0)
    np.random.seed(0)
    rng = random.Random(0)
    usb = _to_tensor([ra.Cutout(black, rng.random() * 0.5) for _ in range(n_usb)])
    p = sample_rand_augment_params(n_ours, 3, generator=torch.Generator().manual_seed(9))
    ours = cutout(torch.zeros(n_ours, 3, 32, 32, dtype=torch.uint8), p.cutout_frac, p.cutout_x, p.cutout_y)

    def stats(t):
        m = (t != 0).any(dim=1)  # (N, H, W) painted
        cols, rows = m.any(dim=1), m.any(dim=2)
        ar = torch.arange(32)
        left = torch.where(cols, ar, 99).amin(dim=1)
        right = torch.where(cols, ar, -1).amax(dim=1)
        top = torch.where(rows, ar, 99).amin(dim=1)
        width = (right - left + 1).clamp(min=0)
        return left.numpy(), top.numpy(), width.numpy(), m.sum(dim=(1, 2)).double().numpy()

    su, so = stats(usb), stats(ours)
    for what, a, b in zip(("left", "top", "width"), su[:3], so[:3]):  # two-sample chi-square
        bins = np.union1d(a, b)
        ca = np.array([(a == v).sum() for v in bins], dtype=float)
        cb = np.array([(b == v).sum() for v in bins], dtype=float)
        assert _same_frequencies(ca, cb), what
    assert _same_distribution(su[3], so[3])  # painted area
    # USB's np.random.uniform(w) is uniform on (1, w]: column 0 is painted only by wide boxes
    assert (su[0] == 0).mean() < 0.15 and (so[0] == 0).mean() < 0.15


# ---------------------------------------------------------------------------
# API: shapes, dtypes, devices, randomness
# ---------------------------------------------------------------------------

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # USB's cifar10 stats


def test_shapes_dtypes_and_normalize(cifar):
    imgs, x = cifar
    g = torch.Generator().manual_seed(0)
    for fn in (weak_view, strong_view, rand_augment):
        y = fn(x, generator=g)
        assert y.shape == x.shape and y.dtype == torch.uint8 and y.device == x.device
        yf = fn(x.float() / 255.0, generator=g)
        assert yf.dtype == torch.float32 and 0.0 <= yf.min() and yf.max() <= 1.0
    ns = weak_view(torch.randint(0, 256, (5, 3, 24, 40), dtype=torch.uint8, generator=g), generator=g)
    assert ns.shape == (5, 3, 24, 40)
    ns = strong_view(torch.randint(0, 256, (5, 3, 24, 40), dtype=torch.uint8, generator=g), generator=g)
    assert ns.shape == (5, 3, 24, 40)

    aug = GPUAugment(MEAN, STD, padding=4, n_ops=3, generator=g)
    for out in (aug.weak(x), aug.strong(x), aug.eval(x)):
        assert out.shape == x.shape and out.dtype == torch.float32
    ref = torch.stack([TF.normalize(TF.to_tensor(im), MEAN, STD) for im in imgs])
    torch.testing.assert_close(aug.eval(x), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(normalize(x, MEAN, STD), ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        weak_view(x[0])


def test_reproducible_and_varies_per_sample(cifar):
    _, x = cifar
    same = x[:1].expand(64, -1, -1, -1).contiguous()
    a = strong_view(same, generator=torch.Generator().manual_seed(1))
    b = strong_view(same, generator=torch.Generator().manual_seed(1))
    c = strong_view(same, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({t.numpy().tobytes() for t in a}) >= 60  # one image, 64 different strong views
    w = weak_view(same, generator=torch.Generator().manual_seed(1))
    assert len({t.numpy().tobytes() for t in w}) >= 40  # 162 crop/flip combinations
    p = sample_rand_augment_params(64, 3, generator=torch.Generator().manual_seed(1))
    assert len(set(map(tuple, p.op_index.tolist()))) >= 60


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_without_sync(cifar):
    _, x = cifar
    xc = x.cuda()
    p = sample_rand_augment_params(x.shape[0], 3, generator=torch.Generator().manual_seed(3))
    wp = sample_weak_params(x.shape[0], 4, generator=torch.Generator().manual_seed(3))
    cpu = strong_view(x, weak_params=wp, ra_params=p)
    pc = RandAugmentParams(*(t.cuda() for t in p))
    wc = WeakParams(*(t.cuda() for t in wp))
    gpu = strong_view(xc, weak_params=wc, ra_params=pc)
    mad, mx = _diff(gpu.cpu(), cpu)
    assert mad <= 1e-3, (mad, mx)
    aug = GPUAugment(MEAN, STD, generator=torch.Generator(device="cuda").manual_seed(0))
    aug.weak(xc), aug.strong(xc), aug.eval(xc)  # warm-up (lazy init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        w, s, e = aug.weak(xc), aug.strong(xc), aug.eval(xc)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert w.device == s.device == e.device == xc.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(OP_NAMES) + ["Invert"])
def test_op_matches_usb_pil_on_cuda(name, cifar, ra):
    """test_op_matches_usb_pil with the batch and the magnitudes on the GPU, same bounds."""
    imgs, x = cifar
    mags = _magnitudes(name, len(imgs))
    ours = apply_op(x.cuda(), name, mags.cuda())
    assert ours.device.type == "cuda"
    ref = _to_tensor([getattr(ra, name)(im, float(v)) for im, v in zip(imgs, mags)])
    mad, mx = _diff(ours.cpu(), ref)
    assert mad <= MAD_BOUND[name], f"{name} on CUDA: MAD {mad:.5f} > {MAD_BOUND[name]} (max {mx})"
    assert mx <= (0 if MAD_BOUND[name] == 0.0 else 1), f"{name} on CUDA: max {mx}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rand_augment_pipeline_matches_usb_on_cuda(cifar, ra, monkeypatch):
    """The whole RandAugment (3 ops + Cutout) on the GPU against USB's, given the same draws."""
    imgs, x = cifar
    params = sample_rand_augment_params(len(imgs), 3, generator=torch.Generator().manual_seed(8))
    ours = apply_rand_augment(x.cuda(), RandAugmentParams(*(t.cuda() for t in params)))
    ref = _pipeline_reference(ra, imgs, params, monkeypatch)
    mad, mx = _diff(ours.cpu(), ref)
    assert mad <= 1e-3, f"pipeline on CUDA: MAD {mad} max {mx}"
