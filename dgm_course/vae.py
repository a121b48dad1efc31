r"""A VAE for the binarized 8x8 digits: a Gaussian encoder and two decoder families.

- :class:`GaussianEncoder`: an MLP :math:`x \mapsto (\mu(x), \log\sigma^2(x))` of
  :math:`q(z \mid x) = \mathcal N(\mu, \operatorname{diag}\sigma^2)`.
- :class:`BernoulliDecoder` (factorized): :math:`p(x \mid z) = \prod_i \operatorname{Bern}(x_i;
  \sigma(\ell_i(z)))`. Pixels are independent given :math:`z`, so all structure must pass
  through :math:`z`.
- :class:`PixelCNNDecoder` (autoregressive, PixelVAE): :math:`p(x \mid z) = \prod_i
  \operatorname{Bern}(x_i; \sigma(\ell_i(x_{<i}, z)))` with masked convolutions (van den Oord et
  al., 2016) over the raster order, conditioned on :math:`z` at every layer (Gulrajani et al.,
  2017). ``n_layers`` sets the receptive field. An autoregressive decoder whose receptive field
  covers the image *can* model the data without :math:`z`, and then nothing in the ELBO keeps
  :math:`q(z \mid x)` off the prior (Chen et al., 2017); whether it *does* collapse depends on
  how :math:`z` enters too. This decoder adds a per-pixel map of :math:`z` at every layer, and
  in notebook 07's runs even three masked 7x7 layers keep using :math:`z`; the same stack with
  :math:`z` as one bias per channel collapses there.

Both decoders give the exact :math:`\log p(x \mid z)` (``log_prob``) and ancestral samples
(``sample``: all pixels at once for the factorized decoder, pixel by pixel for the PixelCNN).

Diagnostics on a data set: :func:`kl_per_dim` (average KL per latent dimension) and
:func:`active_units` (Burda et al., 2015).

Example:
    >>> import torch
    >>> vae = VAE(GaussianEncoder(z_dim=4), PixelCNNDecoder(z_dim=4, n_layers=2))
    >>> x = torch.bernoulli(torch.full((3, 64), 0.5))
    >>> mu, log_var = vae.encoder(x)
    >>> vae.decoder.log_prob(x, mu).shape
    torch.Size([3])
    >>> vae.sample(2).shape
    torch.Size([2, 64])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_input
from .objectives import gaussian_kl

__all__ = [
    "GaussianEncoder",
    "BernoulliDecoder",
    "causal_mask",
    "MaskedConv2d",
    "receptive_field",
    "PixelCNNDecoder",
    "VAE",
    "kl_per_dim",
    "ActiveUnits",
    "active_units",
]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _flat(x: Tensor, x_dim: int, name: str = "x") -> Tensor:
    check_input(x, None, name)
    if x.dim() < 2 or x[0].numel() != x_dim:
        raise ValueError(f"{name} must have shape (batch, {x_dim}) or (batch, 1, 8, 8), got {tuple(x.shape)}")
    return x.reshape(x.shape[0], x_dim)


def _bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """Sum over pixels of log Bern(x; sigmoid(logits)), by the stable BCE with logits."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=-1)


class GaussianEncoder(nn.Module):
    r"""The encoder :math:`q(z \mid x) = \mathcal N(\mu(x), \operatorname{diag} e^{\log\sigma^2(x)})`, an MLP.

    ``forward(x)`` takes ``(B, 64)`` or ``(B, 1, 8, 8)`` and returns ``(mu, log_var)``, each ``(B, z_dim)``.
    """

    def __init__(self, z_dim: int, x_dim: int = 64, hidden: Sequence[int] = (128,)) -> None:
        super().__init__()
        self.z_dim, self.x_dim = z_dim, x_dim
        self.net = _mlp([x_dim, *hidden, 2 * z_dim])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_var = self.net(_flat(x, self.x_dim)).chunk(2, dim=-1)
        return mu, log_var


class BernoulliDecoder(nn.Module):
    r"""The factorized decoder :math:`p(x \mid z) = \prod_{i=1}^{64} \operatorname{Bern}(x_i; \sigma(\ell_i(z)))`.

    :math:`\ell = \text{MLP}(z)`. ``log_prob`` costs O(D) after one MLP pass; ``sample`` draws
    all pixels at once.
    """

    def __init__(self, z_dim: int, x_dim: int = 64, hidden: Sequence[int] = (128,)) -> None:
        super().__init__()
        self.z_dim, self.x_dim = z_dim, x_dim
        self.net = _mlp([z_dim, *hidden, x_dim])

    def logits(self, z: Tensor) -> Tensor:
        check_input(z, (self.z_dim,), "z")
        return self.net(z)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`\log p(x \mid z)`, shape ``(B,)``; ``x`` holds 0./1. pixels."""
        return _bernoulli_log_prob(self.logits(z), _flat(x, self.x_dim))

    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(self.logits(z)), generator=generator)


def causal_mask(kernel_size: int, mask_type: str) -> Tensor:
    r"""The PixelCNN kernel mask, shape ``(k, k)``: 1 where a tap reads an earlier pixel in raster order.

    Rows above the centre are open, the centre row is open left of the centre; type ``"A"``
    (first layer) closes the centre so a pixel never sees itself, type ``"B"`` (later layers)
    opens it, since their centre feature already excludes the pixel's own value.

    Example:
        >>> causal_mask(3, "A").tolist()
        [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c] = 1.0
    mask[c, : c + (mask_type == "B")] = 1.0
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution whose kernel is multiplied by :func:`causal_mask` on every call."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        self.register_buffer("mask", causal_mask(kernel_size, mask_type))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def receptive_field(
    n_layers: int, pixel: tuple[int, int], kernel_size: int = 3, image_shape: tuple[int, int] = (8, 8)
) -> Tensor:
    r"""The input pixels that output ``pixel`` of a masked stack depends on, as a boolean ``(H, W)`` map.

    Computed from the masks alone: walking back from the output, each type-B layer adds the
    pixels its open taps read, then the type-A layer does the same without the centre. One
    layer of 3x3 sees the 3 pixels above and the 1 to the left; every further layer grows the
    field by one row up and one column to each side, except the upper-right *blind spot* of a
    plain masked stack (van den Oord et al., 2016b, Gated PixelCNN), which this map includes.

    Example:
        >>> int(receptive_field(1, (4, 4)).sum()), int(receptive_field(2, (4, 4)).sum())
        (4, 11)
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    H, W = image_shape
    c = kernel_size // 2

    def taps(mask_type: str) -> list[tuple[int, int]]:
        m = causal_mask(kernel_size, mask_type)
        return [(a - c, b - c) for a in range(kernel_size) for b in range(kernel_size) if m[a, b]]

    field = {pixel}
    for mask_type in ["B"] * (n_layers - 1) + ["A"]:
        field = {(r + dr, s + ds) for r, s in field for dr, ds in taps(mask_type)
                 if 0 <= r + dr < H and 0 <= s + ds < W}
    out = torch.zeros(H, W, dtype=torch.bool)
    for r, s in field:
        out[r, s] = True
    return out


class PixelCNNDecoder(nn.Module):
    r"""The autoregressive decoder :math:`p(x \mid z) = \prod_i \operatorname{Bern}(x_i; \sigma(\ell_i(x_{<i}, z)))`.

    A stack of ``n_layers`` masked 3x3 convolutions (type A, then type B) over the
    :math:`8\times 8` image, ``channels`` features each, ReLU between them, and a 1x1 output
    convolution to one logit per pixel. :math:`z` enters every layer: an MLP maps it to a
    feature map :math:`h_z` of shape ``(channels, 8, 8)`` and layer :math:`l` adds
    :math:`W_l h_z` (a 1x1 convolution), a per-pixel bias that depends on :math:`z` only, so it
    cannot break causality.

    ``log_prob`` is exact and costs one pass (all conditionals at once, teacher forcing);
    ``sample`` is ancestral, 64 passes, one per pixel. ``n_layers`` sets the receptive field
    (:func:`receptive_field`), 3x3 kernels: 1 layer sees the 4 nearest earlier pixels; with 4
    layers the centre pixel (4, 4) sees 33 of its 36 predecessors (the other 3 lie in the
    blind spot); the last pixel needs 7 layers to see all 63.
    """

    def __init__(
        self,
        z_dim: int,
        n_layers: int = 2,
        channels: int = 16,
        kernel_size: int = 3,
        hidden: int = 64,
        image_shape: tuple[int, int] = (8, 8),
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        self.z_dim, self.n_layers, self.channels = z_dim, n_layers, channels
        self.kernel_size, self.image_shape = kernel_size, tuple(image_shape)
        H, W = self.image_shape
        self.x_dim = H * W
        self.z_map = _mlp([z_dim, hidden, channels * H * W])
        self.convs = nn.ModuleList(
            [MaskedConv2d(1, channels, kernel_size, "A")]
            + [MaskedConv2d(channels, channels, kernel_size, "B") for _ in range(n_layers - 1)]
        )
        self.conds = nn.ModuleList([nn.Conv2d(channels, channels, 1, bias=False) for _ in range(n_layers)])
        self.out = nn.Conv2d(channels, 1, 1)
        self.out_cond = nn.Conv2d(channels, 1, 1, bias=False)

    def receptive_field(self, pixel: tuple[int, int]) -> Tensor:
        return receptive_field(self.n_layers, pixel, self.kernel_size, self.image_shape)

    def _h_z(self, z: Tensor) -> Tensor:
        check_input(z, (self.z_dim,), "z")
        return self.z_map(z).reshape(z.shape[0], self.channels, *self.image_shape)

    def _logits(self, x: Tensor, h_z: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], 1, *self.image_shape)
        for conv, cond in zip(self.convs, self.conds):
            h = F.relu(conv(h) + cond(h_z))
        return (self.out(h) + self.out_cond(h_z)).reshape(x.shape[0], self.x_dim)

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        r"""All 64 conditional logits :math:`\ell_i(x_{<i}, z)` at once, shape ``(B, 64)``."""
        return self._logits(_flat(x, self.x_dim), self._h_z(z))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        r"""Exact :math:`\log p(x \mid z) = \sum_i \log \operatorname{Bern}(x_i; \sigma(\ell_i))`, shape ``(B,)``."""
        x = _flat(x, self.x_dim)
        return _bernoulli_log_prob(self._logits(x, self._h_z(z)), x)

    @torch.no_grad()
    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling in raster order: pixel i is drawn from its conditional given the pixels before it."""
        h_z = self._h_z(z)
        x = z.new_zeros(z.shape[0], self.x_dim)
        for i in range(self.x_dim):
            p = torch.sigmoid(self._logits(x, h_z)[:, i])
            x[:, i] = torch.bernoulli(p, generator=generator)
        return x


class VAE(nn.Module):
    r"""A VAE: prior :math:`\mathcal N(0, I)`, an ``encoder`` giving ``(mu, log_var)``, a ``decoder`` with ``log_prob``/``sample``.

    Train it with :func:`dgm_course.objectives.vae_loss` (or ``-iwae_bound(...).mean()``).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        if encoder.z_dim != decoder.z_dim:
            raise ValueError(f"encoder and decoder latent sizes differ: {encoder.z_dim} vs {decoder.z_dim}")
        self.encoder, self.decoder = encoder, decoder

    @property
    def z_dim(self) -> int:
        return self.encoder.z_dim

    def _anchor(self) -> Tensor:
        return next(self.parameters())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``x ~ p(x | z)``, ``z ~ N(0, I)``, shape ``(n, 64)``."""
        a = self._anchor()
        z = torch.randn(n, self.z_dim, generator=generator, device=a.device, dtype=a.dtype)
        return self.decoder.sample(z, generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sample of ``p(x | z = mu(x))``: what the decoder makes of the encoder's mean code."""
        mu, _ = self.encoder(x)
        return self.decoder.sample(mu, generator)


def _encode_in_batches(encoder: nn.Module, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    parts = [encoder(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def kl_per_dim(encoder: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    r"""The average over the data set of :math:`KL(q(z_j \mid x) \| \mathcal N(0, 1))`, shape ``(z_dim,)``.

    A dimension with KL near 0 carries no information about :math:`x`: collapsed.
    """
    mu, log_var = _encode_in_batches(encoder, x, batch_size)
    return gaussian_kl(mu, log_var).mean(dim=0)


class ActiveUnits(NamedTuple):
    count: int
    variance: Tensor  # (z_dim,) Cov_x(E_q[z_j | x]) per dimension


@torch.no_grad()
def active_units(encoder: nn.Module, x: Tensor, threshold: float = 0.01, batch_size: int = 1024) -> ActiveUnits:
    r"""Active units (Burda et al., 2015): dimensions :math:`j` with :math:`\operatorname{Cov}_x(E_{q}[z_j \mid x]) > 0.01`.

    :math:`E_q[z_j \mid x] = \mu_j(x)`, so the statistic is the variance over the data set of
    the encoder mean (the ML estimate, dividing by N). A collapsed dimension has the same
    posterior for every :math:`x`, hence variance 0.

    Example:
        >>> enc = GaussianEncoder(z_dim=3)
        >>> active_units(enc, torch.bernoulli(torch.full((50, 64), 0.5))).variance.shape
        torch.Size([3])
    """
    mu, _ = _encode_in_batches(encoder, x, batch_size)
    variance = mu.var(dim=0, correction=0)
    return ActiveUnits(int((variance > threshold).sum()), variance)
