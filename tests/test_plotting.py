"""Plot helpers: the right panels and artists, and the pixels hold the density at the right place."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dgm_course.flows import Affine, Compose, FlowModel, StandardNormal  # noqa: E402
from dgm_course.plotting import (  # noqa: E402
    density_heatmap,
    grid_log_prob,
    sample_grid,
    samples_over_heatmap,
    side_by_side,
    training_curves,
    trajectory,
)
from dgm_course.targets import Energy, get_density  # noqa: E402
from dgm_course.train import History  # noqa: E402

BOUNDS = ((-2.0, 3.0), (-1.0, 1.0))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _gaussian_log_prob(x):
    """N((1, 0.5), diag(0.5^2, 0.3^2)): asymmetric, so a transposed or flipped image would show."""
    m, s = x.new_tensor([1.0, 0.5]), x.new_tensor([0.5, 0.3])
    return (-0.5 * ((x - m) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(1)


def test_heatmap_pixels_are_the_density_at_pixel_centres():
    ax = density_heatmap(_gaussian_log_prob, BOUNDS, resolution=40)
    assert len(ax.figure.axes) == 2 and len(ax.images) == 1  # the panel and its colour bar
    image = ax.images[0]
    assert image.colorbar is not None and image.colorbar.ax is ax.figure.axes[1]
    assert image.colorbar.ax.get_ylabel() == "density" and (ax.get_xlabel(), ax.get_ylabel()) == ("$x_1$", "$x_2$")
    assert image.get_extent() == [-2.0, 3.0, -1.0, 1.0] and image.origin == "lower"
    values = np.asarray(image.get_array())
    assert values.shape == (40, 40)
    # reference: pixel (row i, column j) is centred at x = -2 + 5 (j + 1/2) / 40, y = -1 + 2 (i + 1/2) / 40
    xs, ys = -2 + 5 * (np.arange(40) + 0.5) / 40, -1 + 2 * (np.arange(40) + 0.5) / 40
    xx, yy = np.meshgrid(xs, ys)  # rows vary y, columns vary x
    expected = np.exp(-0.5 * ((xx - 1) / 0.5) ** 2 - 0.5 * ((yy - 0.5) / 0.3) ** 2) / (2 * math.pi * 0.15)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-7)  # float32 evaluation
    # the brightest pixel sits at the mean (1, 0.5)
    i, j = np.unravel_index(values.argmax(), values.shape)
    assert abs(xs[j] - 1) < 5 / 40 and abs(ys[i] - 0.5) < 2 / 40


def test_log_heatmap_clips_minus_infinity():
    target = get_density("checkerboard")
    ax = density_heatmap(target.log_prob, resolution=20, log=True)  # bounds from the target
    values = np.asarray(ax.images[0].get_array())
    assert np.isfinite(values).all()
    assert values.max() == pytest.approx(-math.log(8), abs=1e-6) and values.min() == pytest.approx(-math.log(8) - 20)
    assert ax.get_xlim() == target.bounds[0]


def test_heatmaps_on_one_scale():
    # vmax fixes the top of the colour scale (linear: [0, vmax]; log: [vmax - 20, vmax]); colorbar=False adds none
    fig, (a, b) = plt.subplots(1, 2)
    density_heatmap(_gaussian_log_prob, BOUNDS, resolution=10, ax=a, vmax=0.5, colorbar=False)
    density_heatmap(_gaussian_log_prob, BOUNDS, resolution=10, ax=b, vmax=-1.0, log=True, colorbar=False)
    assert len(fig.axes) == 2
    assert a.images[0].get_clim() == (0.0, 0.5) and a.images[0].get_array().max() > 0.5  # the peak, 2.12, saturates
    assert b.images[0].get_clim() == (-21.0, -1.0) and b.images[0].get_array().min() == -21.0


def test_grid_log_prob_uses_the_models_dtype():
    flow = Affine(2).double()
    model = FlowModel(StandardNormal((2,)).double(), flow)
    log_p = grid_log_prob(model.log_prob, BOUNDS, resolution=8)
    assert log_p.shape == (8, 8) and log_p.dtype == np.float64
    with pytest.raises(ValueError, match="bounds"):
        grid_log_prob(_gaussian_log_prob, ((1.0, 0.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="resolution"):
        grid_log_prob(_gaussian_log_prob, BOUNDS, resolution=1)
    with pytest.raises(ValueError, match="bounds"):
        density_heatmap(_gaussian_log_prob)  # a plain function has no bounds to infer


def test_samples_over_heatmap():
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    ax = samples_over_heatmap(x, _gaussian_log_prob, BOUNDS, resolution=20)
    assert len(ax.images) == 1 and len(ax.collections) == 1
    np.testing.assert_allclose(ax.collections[0].get_offsets(), x.numpy())
    ax = samples_over_heatmap(x)  # no density, bounds from the samples
    assert len(ax.images) == 0 and len(ax.collections) == 1
    lo, hi = ax.get_xlim()
    assert lo < np.quantile(x[:, 0], 0.01) and hi > np.quantile(x[:, 0], 0.99)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        samples_over_heatmap(torch.zeros(5, 3))


def _history(n=100, evals=True):
    h = History(loss_name="train NLL", eval_name="test NLL")
    h.step, h.loss, h.time = list(range(1, n + 1)), [1 / k for k in range(1, n + 1)], [0.01 * k for k in range(n)]
    if evals:
        h.eval_step, h.eval = [50, 100], [0.05, 0.02]
    return h


def test_training_curves():
    ax = training_curves(_history(), reference=0.01)
    # raw loss, moving average, eval markers, one reference line
    assert len(ax.lines) == 4
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("test NLL" in s for s in labels) and any("reference" in s for s in labels)
    np.testing.assert_allclose(ax.lines[2].get_ydata(), [0.05, 0.02])
    # several runs, dicts accepted, no smoothing, two references
    ax = training_curves({"a": _history(evals=False), "b": _history().as_dict()}, smooth=1,
                         reference={"H": 0.0, "floor": 0.1})
    assert len(ax.lines) == 1 + 2 + 2
    with pytest.raises(ValueError, match="History"):
        training_curves([1, 2, 3])


def test_trajectory_one_panel_per_state():
    torch.manual_seed(0)
    flow = Compose([Affine(2), Affine(2), Affine(2)])
    with torch.no_grad():
        for f in flow.flows:
            f.log_scale.normal_()
            f.shift.normal_()
        z = torch.randn(64, 2)
        x, _, states = flow.inverse(z, return_trajectory=True)
    fig = trajectory(states)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["z (noise)", "step 1", "step 2", "x (data)"]
    for ax, state in zip(fig.axes, states):
        assert len(ax.collections) == 1
        np.testing.assert_allclose(ax.collections[0].get_offsets(), state.numpy(), rtol=1e-6)
    # a point keeps its colour across panels
    first, last = fig.axes[0].collections[0].get_facecolors(), fig.axes[-1].collections[0].get_facecolors()
    np.testing.assert_array_equal(first, last)
    # wrapping into rows leaves exactly one Axes per state
    fig = trajectory(states * 2, ncols=3)
    assert len(fig.axes) == 8
    with pytest.raises(ValueError, match="one title per state"):
        trajectory(states, titles=["a"])


def test_side_by_side():
    target = get_density("8gaussians")
    x = target.sample(200, torch.Generator().manual_seed(0))
    fig = side_by_side({"truth": target.log_prob, "data": x, "both": (target.log_prob, x)}, resolution=16)
    assert len(fig.axes) == 5  # three panels, then the colour bars of the two heatmaps
    panels = fig.axes[:3]
    assert [ax.get_title() for ax in panels] == ["truth", "data", "both"]
    assert [len(ax.images) for ax in panels] == [1, 0, 1]
    assert [len(ax.collections) for ax in panels] == [0, 1, 1]
    assert [ax.images[0].colorbar.ax for ax in (panels[0], panels[2])] == fig.axes[3:]
    assert all(ax.get_xlim() == target.bounds[0] for ax in panels)
    fig = side_by_side({"U2": Energy("U2").log_unnormalized}, resolution=16)
    assert fig.axes[0].get_xlim() == (-4.0, 4.0)


def test_sample_grid_places_each_image():
    images = torch.arange(10 * 64, dtype=torch.float32).reshape(10, 64)  # 10 flat 8x8 digits
    ax = sample_grid(images, nrow=4)
    assert len(ax.images) == 1
    canvas = ax.images[0].get_array()
    assert canvas.shape == (1 + 3 * 9, 1 + 4 * 9)
    for k in range(10):
        r, c = divmod(k, 4)
        tile = canvas[1 + 9 * r : 9 * r + 9, 1 + 9 * c : 9 * c + 9]
        np.testing.assert_array_equal(tile, images[k].reshape(8, 8).numpy())
    assert canvas.mask[0].all() and canvas.mask[-9:, -9 * 2 :].all()  # padding and empty cells are masked
    # the gaps take a colour no grey pixel has; the two empty cells of the last row are covered in white
    red, green, blue, _ = ax.images[0].get_cmap().get_bad()
    assert len({red, green, blue}) > 1
    (cover,) = ax.patches
    assert (cover.get_x(), cover.get_y(), cover.get_width(), cover.get_height()) == (18.5, 18.5, 18, 9)  # columns 19-36, rows 19-27
    assert len(sample_grid(images[:8], nrow=4).patches) == 0  # no empty cell, no cover
    assert sample_grid(images.reshape(10, 1, 8, 8), nrow=8).images[0].get_array().shape == (19, 73)
    with pytest.raises(ValueError, match="square"):
        sample_grid(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="nrow"):
        sample_grid(images, nrow=0)
