"""BN statistics under shift: adaptation undoes a constructed mean shift exactly; the analysis leaves the model
unchanged; bn-analysis --shift reports it; bad shifts are one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _byom_helpers import digits, trained_digits_model
from nrflab.cli import main
from nrflab.core.errors import NrflabError
from nrflab.measure.bn_shift import adapt_to_shifts, adapted_accuracy, parse_shift
from nrflab.models import create_model


class MeanReader(nn.Module):
    """BN on one channel, then the mean pixel: class 1 when the normalized mean is positive."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1, affine=False)
        self.bn.running_mean.fill_(0.5)
        self.bn.running_var.fill_(0.04)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.bn(x).mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1)


def _images(n: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    x = (0.3 + 0.4 * y.float()).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone() + shift
    return x, y


def test_adaptation_restores_the_unshifted_accuracy_of_a_constructed_mean_shift():
    model = MeanReader().eval()
    x, y = _images(64, 0.0)
    assert float((model(x).argmax(1) == y).float().mean()) == 1.0
    shifted_x, _ = _images(64, 0.25)  # class 0 now reads 0.55 > the running mean 0.5: predicted 1
    adapt, _ = _images(32, 0.25)  # unlabeled shifted images: their mean 0.75 becomes the new centre
    shifted, adapted = adapted_accuracy(model, shifted_x, y, adapt_images=adapt)
    assert float(shifted.mean()) == 0.5 and float(adapted.mean()) == 1.0
    assert float(model.bn.running_mean) == 0.5  # the user's model is unchanged


def test_bn_analysis_shift_reports_adaptation_and_leaves_the_model_unchanged():
    bundle = digits()
    x, y = bundle.test.tensors()
    train_x, _ = bundle.train.tensors()
    model = trained_digits_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = adapt_to_shifts(model, x[:200], y[:200], adapt_images=train_x, shifts=["gaussian_noise@5"], n=32)
    row = result.rows[0]
    assert row.shift == "gaussian_noise@5" and result.adapt_samples == 32 and result.num_samples == 200
    assert row.shifted_acc < row.clean_acc  # the shift costs accuracy on this model
    assert abs(row.recovered - (row.adapted_acc - row.shifted_acc)) < 1e-9 and row.low <= row.recovered <= row.high
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert "recovered" in result.lines()[1]
    with pytest.raises(NrflabError, match="model with BatchNorm"):
        adapt_to_shifts(create_model("smallcnn", "none", 10, 1), x[:4], y[:4], adapt_images=train_x, shifts=["fog@1"])


def test_bad_shifts_are_one_line():
    assert parse_shift(" fog@2") == ("fog", 2)
    with pytest.raises(NrflabError, match="unknown shift 'rain@2'"):
        parse_shift("rain@2")
    with pytest.raises(NrflabError, match="needs a severity 1-5"):
        parse_shift("fog@9")


def test_the_command_line(tmp_path, capsys):
    model = trained_digits_model()
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(model.eval(), torch.rand(2, 1, 8, 8)), str(path))
    assert main(["bn-analysis", str(path), "-d", "digits", "--shift", "nope@1", "-o", str(tmp_path / "o")]) == 2
    assert "unknown shift 'nope@1'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_corruptions_experiment_adapts_a_constructed_mean_shift_away():
    from nrflab.experiments.corruptions import adapted_corruption_accuracy
    from nrflab.measure.corruptions import corrupt

    model = MeanReader().eval()
    x, y = _images(64, 0.0)
    pool, _ = _images(32, 0.0)
    shifted = corrupt(x, "brightness", 5, seed=0)  # a mean shift up: class 0 is read as class 1
    assert float((model(shifted).argmax(1) == y).float().mean()) == 0.5
    table = adapted_corruption_accuracy(model, x, y, pool, corruptions=["brightness"], severities=[5], seed=0)
    assert table == {"brightness@5": 1.0}
    assert float(model.bn.running_mean) == 0.5  # the model is unchanged
