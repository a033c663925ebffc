"""Diagonal Gaussians over latent codes: sampling with an explicit generator and closed-form KL."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Keeps exp(logvar) finite in float16/float32 without affecting sensible values.
LOGVAR_MIN = -12.0
LOGVAR_MAX = 8.0


@dataclass
class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) per row; ``mean`` and ``logvar`` are ``[B, D]``."""

    mean: Tensor
    logvar: Tensor

    @classmethod
    def from_head(cls, output: Tensor) -> "DiagonalGaussian":
        """Split a ``[B, 2D]`` head output into mean and (clamped) log-variance."""
        mean, logvar = output.chunk(2, dim=-1)
        return cls(mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        """One reparameterised sample per row, ``[B, D]`` (differentiable in mean/logvar)."""
        noise = _standard_normal(self.mean.shape, generator, self.mean)
        return self.mean + self.std * noise

    def sample_codes(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` codes per row, ``[B, K, D]``."""
        shape = (self.mean.shape[0], num_samples, self.mean.shape[1])
        noise = _standard_normal(shape, generator, self.mean)
        return self.mean[:, None] + self.std[:, None] * noise

    def select(self, index: Tensor) -> "DiagonalGaussian":
        return DiagonalGaussian(self.mean[index], self.logvar[index])


def _standard_normal(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    # Drawn on the generator's device (CPU by default) so a seed gives the same codes everywhere.
    device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def kl_divergence(q: DiagonalGaussian, p: DiagonalGaussian) -> Tensor:
    """KL(q || p) per row, summed over latent dimensions: ``[B]``."""
    var_ratio = torch.exp(q.logvar - p.logvar)
    mean_term = (q.mean - p.mean) ** 2 * torch.exp(-p.logvar)
    return 0.5 * (var_ratio + mean_term - 1.0 - (q.logvar - p.logvar)).sum(dim=-1)
