"""Tests for nrflab.measure.corruptions: the corruption registry, CIFAR-C loading and accuracy under corruption."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.data.base import ImageTensorDataset
from nrflab.measure.corruptions import (
    PARAMS,
    available_cifar_c,
    available_corruptions,
    benchmark_corruptions,
    corrupt,
    corrupt_dataset,
    corruption_accuracy,
    load_cifar_c,
    summarize_corruption_accuracy,
)

NAMES = available_corruptions()
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


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


def test_registry_has_cifar_c_corruptions():
    expected = {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "gaussian_blur",
        "contrast",
        "brightness",
        "jpeg_compression",
        "pixelate",
        "speckle_noise",
    }
    assert set(NAMES) == expected == set(PARAMS)
    assert all(len(PARAMS[name]) == 5 for name in NAMES)
    assert set(benchmark_corruptions()) == expected - {"speckle_noise", "gaussian_blur"}


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
    assert dist[0] > 0
    assert all(later >= earlier for earlier, later in zip(dist, dist[1:])), dist
    assert dist[4] > dist[0]


def test_unknown_name_and_bad_severity():
    x = BATCHES["rgb32"]()
    with pytest.raises(NrflabError, match="gaussian_noise.*jpeg_compression"):
        corrupt(x, "fog", 1)
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


def test_corrupt_dataset_uint8_and_float():
    images = (BATCHES["rgb32"]() * 255).round().to(torch.uint8)
    labels = torch.arange(8) % 3
    ds = ImageTensorDataset(images, labels)
    out = corrupt_dataset(ds, "gaussian_noise", 2, seed=4, chunk_size=3)
    assert out.images.dtype == torch.uint8 and out.images.shape == images.shape
    assert torch.equal(out.labels, labels) and torch.equal(ds.images, images)
    assert torch.equal(out.images, corrupt_dataset(ds, "gaussian_noise", 2, seed=4, chunk_size=3).images)
    assert not torch.equal(out.images, images)
    floats = ImageTensorDataset(images.float() / 255, labels)
    whole = corrupt_dataset(floats, "impulse_noise", 4, seed=4, chunk_size=100)
    assert torch.equal(whole.images, corrupt(floats.images, "impulse_noise", 4, seed=4))
    with pytest.raises(NrflabError, match="unknown corruption"):
        corrupt_dataset(ds, "snow", 1)


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
        corruption_accuracy(model, ds, corruptions=["snow"], progress=False)


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
