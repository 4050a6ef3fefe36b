"""Tests for nrflab.measure.corruptions: the corruption registry, CIFAR-C loading and accuracy under corruption."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.data.base import ImageTensorDataset
from nrflab.measure import corruption_ops as ops
from nrflab.measure.corruptions import (
    FIRST_EIGHT,
    PARAMS,
    available_cifar_c,
    available_corruptions,
    benchmark_corruptions,
    corrupt,
    corruption_accuracy,
    load_cifar_c,
    summarize_corruption_accuracy,
)

NAMES = available_corruptions()
RANDOM = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
)
#: CIFAR-10-C's parameters do not make these distort more at every step (elastic's affine shrinks, frost's
#: image weight falls while its frost weight levels off, glass blur's sigma drops from severity 3 to 4).
NOT_MONOTONE = ("glass_blur", "frost", "elastic_transform")


def smooth_batch(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Natural-looking images in [0.05, 0.95]: coarse plus finer upsampled random textures."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, c, 4, 4, generator=g), size=(h, w), mode="bilinear")
    fine = F.interpolate(torch.rand(n, c, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear")
    return 0.05 + 0.9 * (0.7 * coarse + 0.3 * fine)


BATCHES = {
    "rgb32": lambda: smooth_batch(8, 3, 32, 32),
    "gray28": lambda: smooth_batch(8, 1, 28, 28, seed=1).double(),
}


def test_registry_has_all_cifar_c_corruptions_in_order():
    benchmark = [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "frost",
        "fog",
        "brightness",
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    ]
    assert benchmark_corruptions() == benchmark
    assert set(FIRST_EIGHT) < set(benchmark)  # the experiments' default, kept so their numbers stay
    assert NAMES == [*benchmark, "speckle_noise", "gaussian_blur"]
    assert set(NAMES) == set(PARAMS)
    assert all(len(PARAMS[name]) == 5 for name in NAMES)


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name", NAMES)
def test_output_in_range_same_shape_dtype_input_untouched(name, batch):
    like = BATCHES[batch]()
    x = torch.rand(like.shape, generator=torch.Generator().manual_seed(3), dtype=like.dtype)
    x[0, :, :4] = 0.0
    x[0, :, -4:] = 1.0
    before = x.clone()
    for severity in range(1, 6):
        y = corrupt(x, name, severity, seed=1)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert y.min() >= 0 and y.max() <= 1
        assert torch.isfinite(y).all()
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", NAMES)
def test_seed_determinism(name):
    x = BATCHES["rgb32"]()
    a, b, c = corrupt(x, name, 3, seed=7), corrupt(x, name, 3, seed=7), corrupt(x, name, 3, seed=8)
    assert torch.equal(a, b)
    if name in RANDOM:
        assert not torch.equal(a, c)
    else:
        assert torch.equal(a, c)


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name", NAMES)
def test_distortion_grows_with_severity(name, batch):
    x = BATCHES[batch]()
    dist = [float((corrupt(x, name, s, seed=0) - x).abs().mean()) for s in range(1, 6)]
    assert min(dist) > 0
    if name not in NOT_MONOTONE:
        assert all(later >= earlier for earlier, later in zip(dist, dist[1:])), dist
        assert dist[4] > dist[0]


def test_unknown_name_and_bad_severity():
    x = BATCHES["rgb32"]()
    with pytest.raises(NrflabError, match="gaussian_noise.*jpeg_compression"):
        corrupt(x, "spatter", 1)
    for severity in (0, 6, 2.0, True, -1):
        with pytest.raises(NrflabError, match="1, 2, 3, 4, 5"):
            corrupt(x, "contrast", severity)


def test_bad_images_rejected():
    with pytest.raises(NrflabError, match=r"\(N, C, H, W\)"):
        corrupt(torch.zeros(3, 32, 32), "contrast", 1)
    with pytest.raises(NrflabError, match="float"):
        corrupt(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "contrast", 1)
    with pytest.raises(NrflabError, match="1 or 3 channels"):
        corrupt(torch.zeros(1, 2, 32, 32), "jpeg_compression", 1)


def test_noise_statistics_match_parameters():
    x = torch.full((8, 3, 32, 32), 0.5)
    noise = corrupt(x, "gaussian_noise", 5, seed=0) - x
    assert abs(float(noise.std()) - 0.10) < 0.005
    flipped = (corrupt(x, "impulse_noise", 5, seed=0) != x).float()
    assert abs(float(flipped.mean()) - 0.07) < 0.01
    shot = corrupt(x, "shot_noise", 5, seed=0)
    assert abs(float(shot.mean()) - 0.5) < 0.01 and abs(float(shot.var()) - 0.5 / 50) < 0.002


def test_defocus_severity5_is_a_3x3_box():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    y = corrupt(x, "defocus_blur", 5)[0, 0]
    assert torch.allclose(y[3:6, 3:6], torch.full((3, 3), 1 / 9), atol=1e-6)
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-6) and float(y[3:6, 3:6].sum()) == pytest.approx(1.0)


def test_pixelate_matches_pil_box_resize():
    x = (BATCHES["rgb32"]() * 255).round() / 255
    pixels = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for severity, c in enumerate(PARAMS["pixelate"], start=1):
        small = (int(32 * c), int(32 * c))
        ref = np.stack(
            [np.asarray(Image.fromarray(p).resize(small, Image.BOX).resize((32, 32), Image.BOX)) for p in pixels]
        )
        ref = torch.from_numpy(ref).permute(0, 3, 1, 2).float() / 255
        assert (corrupt(x, "pixelate", severity) - ref).abs().max() <= 1.01 / 255


def test_brightness_matches_hsv_roundtrip():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0, :, 0, 0] = 0.0
    for severity, c in enumerate(PARAMS["brightness"], start=1):
        hsv = rgb_to_hsv(x.permute(0, 2, 3, 1).numpy())
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        ref = torch.from_numpy(hsv_to_rgb(hsv)).permute(0, 3, 1, 2)
        assert torch.allclose(corrupt(x, "brightness", severity), ref, atol=1e-9)


def test_jpeg_is_real_jpeg():
    x = BATCHES["rgb32"]()
    pixels = (x[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=40)
    ref = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255
    assert torch.equal(corrupt(x, "jpeg_compression", 5)[0], ref)


def write_cifar_c(root, n: int = 4, names=("fog", "contrast")) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.tile(rng.integers(0, 10, size=n).astype(np.uint8), 5)
    for name in names:
        np.save(root / f"{name}.npy", data)
    np.save(root / "labels.npy", labels)
    return data, labels


def test_load_cifar_c_reads_the_severity_block(tmp_path):
    data, labels = write_cifar_c(tmp_path)
    assert available_cifar_c(tmp_path) == ["contrast", "fog"]
    for severity in (1, 3, 5):
        ds = load_cifar_c(tmp_path, "fog", severity)
        block = slice(4 * (severity - 1), 4 * severity)
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (4, 3, 32, 32)
        assert np.array_equal(ds.images.permute(0, 2, 3, 1).numpy(), data[block])
        assert np.array_equal(ds.labels.numpy(), labels[block].astype(np.int64))


def test_load_cifar_c_errors(tmp_path):
    with pytest.raises(NrflabError, match="not found.*zenodo"):
        load_cifar_c(tmp_path / "missing", "fog", 1)
    write_cifar_c(tmp_path)
    with pytest.raises(NrflabError, match=r"no frost\.npy.*present: contrast, fog"):
        load_cifar_c(tmp_path, "frost", 1)
    with pytest.raises(NrflabError, match="severity"):
        load_cifar_c(tmp_path, "fog", 6)
    np.save(tmp_path / "bad_shape.npy", np.zeros((10, 3, 32, 32), dtype=np.uint8))
    np.save(tmp_path / "bad_dtype.npy", np.zeros((20, 32, 32, 3), dtype=np.float32))
    np.save(tmp_path / "bad_rows.npy", np.zeros((7, 32, 32, 3), dtype=np.uint8))
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name in ("bad_shape", "bad_dtype", "bad_rows"):
        with pytest.raises(NrflabError, match=r"expected uint8 \(5\*n, 32, 32, 3\)"):
            load_cifar_c(tmp_path, name, 1)
    with pytest.raises(NrflabError, match="not a readable .npy"):
        load_cifar_c(tmp_path, "pickled", 1)
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(NrflabError, match=r"labels\.npy not found"):
        load_cifar_c(tmp_path, "fog", 1)
    np.save(tmp_path / "labels.npy", np.zeros(19, dtype=np.int64))
    with pytest.raises(NrflabError, match="expected 20 integer labels"):
        load_cifar_c(tmp_path, "fog", 1)


def constant_model() -> nn.Module:
    """A linear model that always predicts class 0, with a Dropout kept in eval mode to check mode restoring."""
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 32 * 32, 2))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.copy_(torch.tensor([1.0, 0.0]))
    model.train()
    model[1].eval()
    return model


def test_corruption_accuracy_rows_and_model_mode():
    images = BATCHES["rgb32"]()
    ds = ImageTensorDataset(images, torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]))
    model = constant_model()
    rows = corruption_accuracy(
        model, ds, corruptions=["contrast", "impulse_noise"], severities=(1, 5), batch_size=3, progress=False
    )
    assert [(r["corruption"], r["severity"]) for r in rows] == [
        ("contrast", 1),
        ("contrast", 5),
        ("impulse_noise", 1),
        ("impulse_noise", 5),
    ]
    assert all(r["accuracy"] == 3 / 8 for r in rows)
    assert model.training and model[0].training and not model[1].training
    assert torch.equal(ds.images, images)
    default = corruption_accuracy(
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)), ds, severities=(2,), progress=False
    )
    assert [r["corruption"] for r in default] == benchmark_corruptions()
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in default)
    with pytest.raises(NrflabError, match="unknown corruption"):
        corruption_accuracy(model, ds, corruptions=["spatter"], progress=False)


def test_summarize_corruption_accuracy():
    rows = [
        {"corruption": "a", "severity": 1, "accuracy": 0.8},
        {"corruption": "a", "severity": 2, "accuracy": 0.6},
        {"corruption": "b", "severity": 1, "accuracy": 0.4},
        {"corruption": "b", "severity": 2, "accuracy": 0.2},
    ]
    summary = summarize_corruption_accuracy(rows)
    assert summary["mean"] == pytest.approx(0.5)
    assert summary["per_corruption"] == pytest.approx({"a": 0.7, "b": 0.3})
    assert summary["per_severity"] == pytest.approx({1: 0.6, 2: 0.4})
    with pytest.raises(NrflabError, match="no corruption accuracy rows to summarize"):
        summarize_corruption_accuracy([])


# The seven corruptions added with the frequency lens, each checked against its formula in make_cifar_c.py
# (imagecorruptions, the packaged reference, installs here but does not import: it needs pkg_resources).


def clipped_zoom_reference(img: np.ndarray, zoom: float) -> np.ndarray:
    """make_cifar_c.py's clipped_zoom on one H x W image, through scipy.ndimage.zoom."""
    from scipy.ndimage import zoom as scizoom

    h = img.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    out = scizoom(img[top : top + ch, top : top + ch], (zoom, zoom), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


@pytest.mark.parametrize("size", [32, 28])
def test_zoom_blur_matches_scipy_zoom(size):
    x = smooth_batch(2, 3, size, size).double()
    for severity, bound in enumerate(PARAMS["zoom_blur"], start=1):
        zooms = np.arange(1, bound, 0.01)
        assert len(zooms) == math.ceil((bound - 1) / 0.01)  # numpy's float steps: 1.06 itself is included
        ref = x.clone()
        for z in zooms:
            ref += torch.from_numpy(np.stack([[clipped_zoom_reference(c, z) for c in img] for img in x.numpy()]))
        ref /= len(zooms) + 1
        assert torch.allclose(corrupt(x, "zoom_blur", severity), ref.clamp(0, 1), atol=1e-9)


@pytest.mark.parametrize(("mode", "truncate"), [("nearest", 4.0), ("reflect", 3.0)])
def test_gaussian_blur_matches_scipy(mode, truncate):
    from scipy.ndimage import gaussian_filter

    x = smooth_batch(2, 2, 12, 9).double()
    for sigma in (0.4, 1.3, 6.4):  # 6.4: the kernel is wider than the image (reflected more than once)
        ours = ops.gaussian_blur(x, sigma, truncate=truncate, mode=mode)
        ref = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode=mode, truncate=truncate)
        assert np.allclose(ours.numpy(), ref, atol=1e-12)


def test_glass_blur_permutation_is_the_sequential_swap_loop():
    n, h, w, delta, iterations = 3, 7, 6, 1, 2
    perm = ops.glass_permutation(n, h, w, delta, iterations, torch.Generator().manual_seed(5))
    ys, xs = range(h - delta, delta, -1), range(w - delta, delta, -1)
    draws = torch.randint(
        -delta, delta, (iterations, len(ys), len(xs), 2, n), generator=torch.Generator().manual_seed(5)
    )
    assert set(draws.unique().tolist()) == {-1, 0}
    for img in range(n):
        grid = np.arange(h * w).reshape(h, w)
        for it in range(iterations):
            for a, row in enumerate(ys):
                for b, col in enumerate(xs):
                    dx, dy = int(draws[it, a, b, 0, img]), int(draws[it, a, b, 1, img])
                    grid[row, col], grid[row + dy, col + dx] = grid[row + dy, col + dx], grid[row, col]
        assert perm[img].tolist() == grid.flatten().tolist()


def test_glass_blur_is_blur_floor_shuffle_blur():
    x = smooth_batch(2, 3, 32, 32).double()
    sigma, delta, iterations = PARAMS["glass_blur"][3]
    perm = ops.glass_permutation(2, 32, 32, delta, iterations, torch.Generator().manual_seed(0))
    blurred = (ops.gaussian_blur(x, sigma) * 255).floor() / 255
    shuffled = torch.stack([img.reshape(3, -1)[:, p].reshape(3, 32, 32) for img, p in zip(blurred, perm)])
    assert torch.allclose(corrupt(x, "glass_blur", 4, seed=0), ops.gaussian_blur(shuffled, sigma).clamp(0, 1))


@pytest.mark.parametrize(("angle", "step"), [(0.0, (0, 1)), (90.0, (1, 0)), (45.0, None)])
def test_motion_blur_is_a_one_sided_gaussian_streak(angle, step):
    radius, sigma = PARAMS["motion_blur"][4]
    width = 2 * radius + 1
    taps = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    x = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    x[0, 0, 20, 20] = 1.0
    y = ops.motion_blur(x, radius, sigma, torch.tensor([angle]))[0, 0]
    assert float(y.sum()) == pytest.approx(1.0)
    expected = np.zeros((41, 41))
    for i, weight in enumerate(taps):  # output p reads p + ceil(i * (sin, cos) - 0.5): the streak runs backwards
        dy = math.ceil(i * math.sin(math.radians(angle)) - 0.5)
        dx = math.ceil(i * math.cos(math.radians(angle)) - 0.5)
        if step is not None:
            assert (dy, dx) == (i * step[0], i * step[1])
        expected[20 - dy, 20 - dx] += weight  # at 45 degrees neighbouring taps can read the same pixel
    assert np.allclose(y.numpy(), expected, atol=1e-12)


def test_elastic_transform_matches_opencv_and_scipy_formulas():
    from scipy.ndimage import gaussian_filter, map_coordinates

    n, h, w = 2, 32, 32
    x = smooth_batch(n, 3, h, w).double()
    for severity in (1, 2, 5):
        alpha, sigma, affine = PARAMS["elastic_transform"][severity - 1]
        gen = torch.Generator().manual_seed(11)
        shift = (torch.rand(n, 3, 2, generator=gen, dtype=torch.float64) * 2 - 1).numpy() * affine
        field = (torch.rand(n, 2, h, w, generator=gen, dtype=torch.float64) * 2 - 1).numpy()
        ours = corrupt(x, "elastic_transform", severity, seed=11)
        c, s = 16.0, float(32 // 3)
        pts1 = np.array([[c + s, c + s], [c + s, c - s], [c - s, c - s]])
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
        for i in range(n):
            m = np.linalg.solve(np.c_[pts1, np.ones(3)], pts1 + shift[i]).T  # cv2.getAffineTransform
            inv = np.linalg.inv(np.r_[m, [[0, 0, 1]]])
            src_x = inv[0, 0] * cols + inv[0, 1] * rows + inv[0, 2]
            src_y = inv[1, 0] * cols + inv[1, 1] * rows + inv[1, 2]
            # OpenCV's BORDER_REFLECT_101 is scipy's "mirror"; map_coordinates' "reflect" is make_cifar_c's.
            warped = [map_coordinates(ch, [src_y, src_x], order=1, mode="mirror") for ch in x[i].numpy()]
            dx, dy = (gaussian_filter(f, sigma, mode="reflect", truncate=3) if sigma > 0 else f for f in field[i])
            dx, dy = dx * alpha, dy * alpha
            ref = np.stack([map_coordinates(ch, [rows + dy, cols + dx], order=1, mode="reflect") for ch in warped])
            assert np.allclose(ours[i].numpy(), np.clip(ref, 0, 1), atol=1e-6), severity


def test_fog_is_plasma_haze_rescaled_to_the_maximum():
    x = smooth_batch(3, 3, 32, 32).double()
    for severity, (strength, decay) in enumerate(PARAMS["fog"], start=1):
        gen = torch.Generator().manual_seed(2)
        haze = ops.plasma_fractal(3, 256, decay, gen, x, crop=(32, 32))
        top = x.amax(dim=(1, 2, 3), keepdim=True)
        ref = ((x + strength * haze[:, None]) * top / (top + strength)).clamp(0, 1)
        assert torch.allclose(corrupt(x, "fog", severity, seed=2), ref)
    full = ops.plasma_fractal(2, 64, 2.0, torch.Generator().manual_seed(0), x, crop=(64, 64))
    assert torch.allclose(full.amin(dim=(1, 2)), torch.zeros(2, dtype=full.dtype))
    assert torch.allclose(full.amax(dim=(1, 2)), torch.ones(2, dtype=full.dtype))


def test_frost_blends_a_frost_texture():
    x = smooth_batch(64, 3, 32, 32).double()
    texture = ops.frost_texture(64, 3, 32, 32, torch.Generator().manual_seed(4), x)
    assert texture.min() >= 0 and texture.max() <= 1
    mean = texture.mean(dim=(0, 2, 3)).tolist()
    assert mean == pytest.approx(list(ops.FROST_MEAN), abs=0.05)
    assert float(texture.std(dim=(2, 3)).mean()) == pytest.approx(ops.FROST_STD, abs=0.03)
    for severity, (a, b) in enumerate(PARAMS["frost"], start=1):
        assert torch.allclose(corrupt(x, "frost", severity, seed=4), (a * x + b * texture).clamp(0, 1))


def test_snow_layer_is_symmetric_over_a_lifted_image():
    x = torch.zeros(4, 3, 32, 32, dtype=torch.float64)
    for severity, params in enumerate(PARAMS["snow"], start=1):
        blend = params[6]
        flakes = corrupt(x, "snow", severity, seed=3) - (1 - blend) * 0.5  # black lifts to (1 - blend) * 0.5
        assert float(flakes.min()) >= -1e-12
        assert torch.allclose(flakes, flakes.flip(-2, -1))  # the layer plus its 180-degree rotation
        assert torch.equal(flakes[:, 0], flakes[:, 2])  # one layer for every channel
