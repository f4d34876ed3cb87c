"""The training recipe: loss, flips, schedule, validation split, best epoch and early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from astromodal_image import training
from astromodal_image.network import CutoutAutoencoder, dihedral, masked_mse, recipe_loss
from astromodal_image.tokenizer import ImageTokenizer

from astromodal_core import ConfigError


def test_recipe_loss_weights_sources_and_colours():
    target = torch.zeros(1, 2, 2, 2)
    target[0, :, 0, 0] = torch.tensor([3.0, 1.0])  # a source pixel (band 0 above the level)
    pred = target.clone()
    pred[0, 0, 0, 0] += 1.0  # error 1 on the source pixel of band 0
    pred[0, 1, 1, 1] += 2.0  # error 2 on a sky pixel of band 1
    valid = torch.ones_like(target, dtype=torch.bool)
    plain = recipe_loss(pred, target, valid, source_level=2.0, source_weight=0.0, colour_weight=0.0)
    assert float(plain) == pytest.approx(float(masked_mse(pred, target, valid))) == pytest.approx(5 / 8)
    # the source pixel weighs 1 + 3: (4 * 1 + 4) / (7 + 4)
    src = recipe_loss(pred, target, valid, source_level=2.0, source_weight=3.0, colour_weight=0.0)
    assert float(src) == pytest.approx(8 / 11)
    # colour (band 1 - band 0) error on the one source pixel: -1; sky pixels do not count
    col = recipe_loss(pred, target, valid, source_level=2.0, source_weight=0.0, colour_weight=0.5)
    assert float(col) == pytest.approx(5 / 8 + 0.5 * 1.0)
    # every pixel also weighs cosh(target), capped: the source pixel 5 (cosh 3 = 10.07), its
    # band-1 neighbour cosh(1), the six others 1; a cap of 1 is the plain loss
    cap = recipe_loss(pred, target, valid, source_level=2.0, source_weight=0.0, colour_weight=0.0,
                      flux_weight_cap=5.0)
    assert float(cap) == pytest.approx((5 * 1 + 4) / (5 + math.cosh(1.0) + 6))
    assert float(recipe_loss(pred, target, valid, source_level=2.0, source_weight=0.0, colour_weight=0.0,
                             flux_weight_cap=1.0)) == pytest.approx(5 / 8)
    # invalid pixels count nowhere
    valid[0, 0, 0, 0] = False
    assert float(recipe_loss(pred, target, valid, source_level=2.0, source_weight=3.0,
                             colour_weight=0.5)) == pytest.approx(4 / 7)


def test_dihedral_gives_the_eight_flips_and_rotations():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    outs = [dihedral(x, k) for k in range(8)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    assert torch.equal(outs[0], x)
    assert torch.equal(dihedral(dihedral(x, 1), 3), x)  # a rotation and its inverse


def test_one_cycle_schedule():
    total, lr = 100, 3e-3
    rates = [training.one_cycle(s, total, lr) for s in range(total)]
    assert rates[0] == pytest.approx((lr / 25, 0.95))
    assert rates[10] == pytest.approx((lr, 0.85))  # the peak after a tenth of the steps
    assert rates[-1] == pytest.approx((lr / 25 / 1e4, 0.95))
    lrs = [r for r, _ in rates]
    assert max(lrs) == pytest.approx(lr) and all(b <= a for a, b in zip(lrs[10:], lrs[11:]))


def test_validation_split_is_deterministic_and_disjoint():
    tok = ImageTokenizer(cutout_size=16, bands=["G"], channels=(8,))
    fit, val = tok.validation_split(95)
    assert len(val) == 9 and len(fit) == 86 and not set(fit) & set(val)
    assert sorted([*fit, *val]) == list(range(95))
    np.testing.assert_array_equal(tok.validation_split(95)[1], val)
    assert len(ImageTokenizer(cutout_size=16, bands=["G"], channels=(8,), rng_seed=1).validation_split(95)[1]) == 9
    assert not np.array_equal(ImageTokenizer(cutout_size=16, bands=["G"], channels=(8,), rng_seed=1)
                              .validation_split(95)[1], val)
    assert len(tok.validation_split(9)[1]) == 0  # too few cutouts: no validation
    assert len(ImageTokenizer(cutout_size=16, bands=["G"], channels=(8,), val_fraction=0.0)
               .validation_split(95)[1]) == 0


@pytest.mark.parametrize(("key", "value", "message"), [
    ("val_fraction", 1.0, r"val_fraction must be in \[0, 1\), got 1.0"),
    ("patience", -1, "patience must be >= 0"),
    ("schedule", "cosine", r"schedule must be one of \['one_cycle', 'constant'\], got 'cosine'"),
    ("stretch", 0, "stretch must be a positive number, got 0.0"),
    ("source_weight", -1, "source_weight must be a number >= 0, got -1.0"),
    ("colour_weight", float("nan"), "colour_weight must be a number >= 0, got nan"),
    ("min_epoch_steps", 0, "min_epoch_steps must be >= 1, got 0"),
    ("flux_weight_cap", 0.5, r"flux_weight_cap must be a number >= 1 \(1: off\), got 0.5"),
    ("augment", "yes", "augment must be true or false, got 'yes'"),
])
def test_recipe_settings_are_checked(key, value, message):
    with pytest.raises(ConfigError, match=rf"^tokenizers\.image: ImageTokenizer: {message}"):
        ImageTokenizer.from_config({"cutout_size": 16, "channels": [8], key: value})


def _tiny_model():
    torch.manual_seed(0)
    return CutoutAutoencoder(1, 2, [4])


def test_best_epoch_is_kept_and_training_stops_early(monkeypatch):
    x = torch.randn(20, 1, 8, 8)
    valid = torch.ones_like(x, dtype=torch.bool)
    scripted = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    snapshots = []

    def fake_validation(model, *args, **kwargs):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(training, "validation_loss", fake_validation)
    model = _tiny_model()
    result = training.train_autoencoder(
        model, x, valid, epochs=5, batch_size=8, lr=1e-2, seed=0, device=torch.device("cpu"),
        config={}, val=(x[:4], valid[:4]), patience=2, progress=False)
    # epochs 3 and 4 do not beat epoch 2: stopped after epoch 4, epoch 2's weights kept
    assert result.val_history == [3.0, 2.0, 2.5, 2.6] and len(result.history) == 4
    assert result.best_epoch == 2 and result.stopped_early
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[1][k])


def test_without_validation_the_last_epoch_is_kept():
    x = torch.randn(12, 1, 8, 8)
    valid = torch.ones_like(x, dtype=torch.bool)
    result = training.train_autoencoder(
        _tiny_model(), x, valid, epochs=2, batch_size=8, lr=1e-2, seed=0, device=torch.device("cpu"),
        config={}, progress=False, min_epoch_steps=5)
    assert result.best_epoch == 2 and result.val_history == [] and not result.stopped_early
    assert all(math.isfinite(h) for h in result.history)


def test_min_epoch_steps_repeats_passes_with_their_own_order(monkeypatch):
    seen = []
    real = training.dihedral

    def spy(x, k):
        seen.append(k)
        return real(x, k)

    monkeypatch.setattr(training, "dihedral", spy)
    x = torch.randn(10, 1, 8, 8)
    valid = torch.ones_like(x, dtype=torch.bool)
    steps = []
    model = _tiny_model()
    orig = model.forward

    def counting(inp):
        steps.append(len(inp))
        return orig(inp)

    model.forward = counting
    training.train_autoencoder(model, x, valid, epochs=1, batch_size=4, lr=1e-2, seed=0,
                               device=torch.device("cpu"), config={}, progress=False, min_epoch_steps=7)
    assert steps == [4, 4, 2] * 3  # three passes of 3 batches: at least 7 steps
    # one flip / rotation drawn per batch for (seed, epoch), applied to cutouts and mask alike
    flips = np.random.default_rng([0, 0, 1]).integers(0, 8, 9)
    assert seen == [int(k) for k in flips if k for _ in range(2)]
