"""The convolutional autoencoder (torch): stride-2 stages down to a ``latent_dim`` grid and back."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _stage(c_in: int, c_out: int, *, down: bool) -> list[nn.Module]:
    first: nn.Module
    if down:
        first = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
    else:
        first = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
    return [first, nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]


class CutoutAutoencoder(nn.Module):
    """Encoder (n, bands, H, W) -> (n, latent_dim, H/2^s, W/2^s) and the mirrored decoder.

    ``channels`` gives the width of each of the ``s = len(channels)`` stride-2 stages.
    """

    def __init__(self, n_bands: int, latent_dim: int, channels: Sequence[int]):
        super().__init__()
        chans = [int(c) for c in channels]
        layers: list[nn.Module] = []
        prev = n_bands
        for c in chans:
            layers += _stage(prev, c, down=True)
            prev = c
        layers.append(nn.Conv2d(prev, latent_dim, 1))
        self.encoder = nn.Sequential(*layers)
        layers = [nn.Conv2d(latent_dim, chans[-1], 3, padding=1), nn.SiLU()]
        rev = chans[::-1]
        for i, c in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            layers += _stage(c, nxt, down=False)
        layers.append(nn.Conv2d(rev[-1], n_bands, 3, padding=1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)


def preprocess(
    flux: torch.Tensor, offset: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Arcsinh range compression per band; returns (input with NaN -> 0, validity mask)."""
    x = torch.asinh((flux - offset.view(1, -1, 1, 1)) / scale.view(1, -1, 1, 1))
    valid = ~torch.isnan(x)
    return torch.nan_to_num_(x, nan=0.0), valid


def postprocess(y: torch.Tensor, offset: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`preprocess`: compressed values back to flux units."""
    return torch.sinh(y) * scale.view(1, -1, 1, 1) + offset.view(1, -1, 1, 1)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error over valid pixels only (NaN pixels and absent bands excluded)."""
    w = valid.to(pred.dtype)
    return ((pred - target) ** 2 * w).sum() / w.sum().clamp_min(1.0)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips / 90-degree rotations of the last two axes (``k`` in 0..7)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x


def recipe_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    *,
    source_level: float,
    source_weight: float,
    colour_weight: float,
    flux_weight_cap: float = 1.0,
) -> torch.Tensor:
    """The training loss on range-compressed cutouts.

    A masked mean squared error in which a pixel whose target exceeds ``source_level`` (the
    compressed value of the source threshold) weighs ``1 + source_weight``, and every pixel
    also weighs ``min(cosh(target), flux_weight_cap)`` (an error ``d`` of the compressed value
    is a flux error of about ``cosh(target) * d``: bright pixels count more, up to the cap);
    plus ``colour_weight`` times the mean squared error of the colours (differences of adjacent
    bands) on pixels where both bands are valid and either is a source. With both weights 0 and
    the cap 1 this is :func:`masked_mse`.
    """
    w = valid.to(pred.dtype)
    src = (target > source_level) & valid
    if source_weight:
        w = w * (1.0 + source_weight * src.to(pred.dtype))
    if flux_weight_cap > 1:
        w = w * torch.cosh(target.detach().clamp(-30.0, 30.0)).clamp(max=flux_weight_cap)
    loss = ((pred - target) ** 2 * w).sum() / w.sum().clamp_min(1.0)
    if colour_weight and pred.shape[1] > 1:
        pair = (valid[:, 1:] & valid[:, :-1]) & (src[:, 1:] | src[:, :-1])
        pw = pair.to(pred.dtype)
        dc = (pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])
        loss = loss + colour_weight * (dc**2 * pw).sum() / pw.sum().clamp_min(1.0)
    return loss
