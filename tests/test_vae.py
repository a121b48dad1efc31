"""The VAE: causal masks (checked by autograd), exact and normalized log p(x|z), ancestral sampling,
diagnostics on constructed encoders, and a training step that lowers the loss."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Normal, kl_divergence

from dgm_course.data import binarized_digits
from dgm_course.jacobian import batch_jacobian
from dgm_course.objectives import vae_loss
from dgm_course.vae import (
    VAE,
    BernoulliDecoder,
    GaussianEncoder,
    MaskedConv2d,
    PixelCNNDecoder,
    active_units,
    causal_mask,
    kl_per_dim,
    receptive_field,
)

f64 = torch.float64


def _binary(n: int, d: int = 64, seed: int = 0) -> Tensor:
    return torch.bernoulli(torch.full((n, d), 0.5, dtype=f64), generator=torch.Generator().manual_seed(seed))


def test_causal_masks_by_hand():
    assert causal_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert causal_mask(5, "B")[2].tolist() == [1, 1, 1, 0, 0]
    assert causal_mask(5, "B")[3:].sum() == 0
    with pytest.raises(ValueError, match="mask_type"):
        causal_mask(3, "C")
    with pytest.raises(ValueError, match="odd"):
        causal_mask(4, "A")


def test_masked_conv_ignores_masked_weights():
    conv = MaskedConv2d(1, 1, 3, "A").double()
    x = torch.randn(2, 1, 8, 8, dtype=f64)
    before = conv(x)
    with torch.no_grad():
        conv.weight[0, 0, 1, 1] += 5.0  # centre: closed in type A
        conv.weight[0, 0, 2, :] += 5.0  # row below: closed
    torch.testing.assert_close(conv(x), before, rtol=0, atol=0)


def _pixels(field: Tensor) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in torch.nonzero(field)}


def test_receptive_field_by_hand():
    assert _pixels(receptive_field(1, (4, 4))) == {(3, 3), (3, 4), (3, 5), (4, 3)}
    two = _pixels(receptive_field(2, (4, 4)))
    assert two == {(2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (3, 2), (3, 3), (3, 4), (3, 5), (4, 2), (4, 3)}
    assert (3, 6) not in two  # the blind spot of a plain masked stack
    assert not receptive_field(3, (0, 0)).any()  # the first pixel sees nothing
    sizes = [int(receptive_field(n, (7, 4)).sum()) for n in range(1, 6)]
    assert sizes == sorted(set(sizes)), sizes  # strictly growing with depth


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
def test_masks_are_causal_by_autograd(n_layers):
    torch.manual_seed(n_layers)
    dec = PixelCNNDecoder(z_dim=2, n_layers=n_layers, channels=8).double()
    z = torch.randn(1, 2, dtype=f64)
    x = torch.rand(6, 64, dtype=f64)  # any real input: the logits are a function of all 64 inputs
    jac = batch_jacobian(lambda v: dec.logits(v, z.expand(v.shape[0], -1)), x)  # (B, 64 out, 64 in)
    support = (jac != 0).any(dim=0)
    # Output pixel i never depends on input pixel j >= i: masked weights give exact zeros.
    assert not torch.triu(support).any()
    for i in range(64):
        field = dec.receptive_field((i // 8, i % 8)).flatten()
        # The gradient support is exactly the receptive field computed from the masks alone.
        assert torch.equal(support[i], field), (i, support[i].nonzero().flatten().tolist())
        if i > 0:
            assert support[i, :i].any()


def _all_images(n_pixels: int) -> Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n_pixels)), dtype=f64)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_pixelcnn_is_normalized(n_layers):
    # A 3x3 image has 512 configurations: exp(log p(x|z)) sums to 1 only if the factorization is causal.
    torch.manual_seed(0)
    dec = PixelCNNDecoder(z_dim=2, n_layers=n_layers, channels=8, image_shape=(3, 3)).double()
    x = _all_images(9)
    for z in torch.randn(3, 1, 2, dtype=f64):
        total = dec.log_prob(x, z.expand(len(x), -1)).exp().sum()
        assert abs(total.item() - 1.0) < 1e-12


def test_pixelcnn_log_prob_matches_bernoulli():
    torch.manual_seed(0)
    dec = PixelCNNDecoder(z_dim=3, n_layers=2, channels=8).double()
    x, z = _binary(5), torch.randn(5, 3, dtype=f64)
    ref = Bernoulli(logits=dec.logits(x, z)).log_prob(x).sum(-1)
    torch.testing.assert_close(dec.log_prob(x, z), ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(dec.log_prob(x.reshape(5, 1, 8, 8), z), ref, rtol=0, atol=1e-10)


def test_pixelcnn_ancestral_sampling_matches_exact_distribution():
    # 2x2 image: 16 configurations with exact probabilities; sample frequencies must match them.
    torch.manual_seed(1)
    dec = PixelCNNDecoder(z_dim=2, n_layers=2, channels=8, image_shape=(2, 2)).double()
    z = torch.randn(1, 2, dtype=f64)
    probs = dec.log_prob(_all_images(4), z.expand(16, -1)).exp()
    n = 20000
    s = dec.sample(z.expand(n, -1), torch.Generator().manual_seed(0))
    codes = (s * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=f64)).sum(-1).long()
    freq = torch.bincount(codes, minlength=16).double() / n
    # Binomial standard error sqrt(p(1-p)/n) <= 0.0036; 5 of them.
    assert (freq - probs).abs().max() < 5 * (probs * (1 - probs) / n).sqrt().max() + 1e-3
    assert set(s.unique().tolist()) <= {0.0, 1.0}


def test_bernoulli_decoder_log_prob_and_sampling():
    torch.manual_seed(0)
    dec = BernoulliDecoder(z_dim=3, hidden=(16,)).double()
    x, z = _binary(4), torch.randn(4, 3, dtype=f64)
    ref = Bernoulli(logits=dec.logits(z)).log_prob(x).sum(-1)
    torch.testing.assert_close(dec.log_prob(x, z), ref, rtol=0, atol=1e-10)
    n = 4000
    s = dec.sample(z[:1].expand(n, -1), torch.Generator().manual_seed(0))
    p = torch.sigmoid(dec.logits(z[:1]))[0].detach()
    assert (s.mean(0) - p).abs().max() < 5 * 0.5 / n**0.5  # 5 binomial standard errors at worst p = 1/2


class _ConstructedEncoder(nn.Module):
    """mu_j(x) = a_j x_j, so Cov_x(mu_j) = a_j^2 Var(x_j): a known set of informative dimensions."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a, self.z_dim = a, len(a)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = x[:, : self.z_dim] * self.a
        return mu, torch.full_like(mu, -1.0) + x[:, : self.z_dim]


def test_active_units_on_constructed_encoder():
    x = _binary(500, seed=1)
    a = torch.tensor([1.0, 0.5, 1.0, 0.1, 0.0, 2.0], dtype=f64)  # variances ~0.25 a^2: 0.25, 0.0625, 0.25, 0.0025, 0, 1
    au = active_units(_ConstructedEncoder(a), x, batch_size=64)
    assert au.count == 4
    ref = (x[:, :6] * a).var(dim=0, correction=0)
    torch.testing.assert_close(au.variance, ref, rtol=1e-12, atol=1e-15)
    assert active_units(_ConstructedEncoder(a), x, threshold=0.001).count == 5


def test_kl_per_dim_is_data_average():
    enc = _ConstructedEncoder(torch.tensor([1.0, 0.0, 2.0], dtype=f64))
    x = _binary(300, seed=2)
    mu, log_var = enc(x)
    ref = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).mean(0)
    torch.testing.assert_close(kl_per_dim(enc, x, batch_size=7), ref, rtol=0, atol=1e-12)


def test_vae_shapes_dtypes_and_errors():
    torch.manual_seed(0)
    vae = VAE(GaussianEncoder(4, hidden=(16,)), PixelCNNDecoder(4, n_layers=1, channels=4)).double()
    assert vae.sample(3).shape == (3, 64) and vae.sample(3).dtype == f64
    assert vae.reconstruct(_binary(2).reshape(2, 1, 8, 8)).shape == (2, 64)
    with pytest.raises(ValueError, match="latent sizes"):
        VAE(GaussianEncoder(4), BernoulliDecoder(3))
    with pytest.raises(ValueError, match=r"\(batch, 64\)"):
        vae.encoder(torch.zeros(2, 63, dtype=f64))
    with pytest.raises(ValueError, match="floating"):
        vae.encoder(torch.zeros(2, 64, dtype=torch.int64))
    with pytest.raises(ValueError, match="z must have shape"):
        vae.decoder.log_prob(_binary(2), torch.zeros(2, 3, dtype=f64))


@pytest.mark.parametrize("decoder", ["bernoulli", "pixelcnn"])
def test_training_steps_reduce_the_loss(decoder):
    torch.manual_seed(0)
    x = binarized_digits(seed=0).x_train[:64]
    dec = BernoulliDecoder(4, hidden=(32,)) if decoder == "bernoulli" else PixelCNNDecoder(4, n_layers=2, channels=8)
    vae = VAE(GaussianEncoder(4, hidden=(32,)), dec)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)

    def loss_on_fixed_noise() -> float:
        with torch.no_grad():
            return vae_loss(vae, x, generator=torch.Generator().manual_seed(0)).loss.item()

    before = loss_on_fixed_noise()
    for _ in range(5):
        opt.zero_grad()
        vae_loss(vae, x).loss.backward()
        opt.step()
    # A fresh model starts near 64 log 2 = 44 nats; five Adam steps take off several nats.
    assert loss_on_fixed_noise() < before - 1.0
