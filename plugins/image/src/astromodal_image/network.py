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
