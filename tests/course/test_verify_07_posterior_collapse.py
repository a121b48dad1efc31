"""Notebook 07 (posterior collapse): its test cells and its verification spec against wrong answers
(the tests every notebook gets come from ``_verify``).

In this process, answers right on the visible examples fail the hidden checks, and an all-open mask
fails the autograd check. The verifier with ``specs/07_posterior_collapse.py`` gives a submission
mixing wrong answers, a reference in disguise and correct work written differently exactly the points
of its correct parts.
"""

from __future__ import annotations

import pytest
import torch

from ._course import ASSIGNMENT_IDS, notebook, task_test_code
from ._verify import reasons, scores, solution_answers, verify_submissions
from ._verify import (  # noqa: F401 - the tests every notebook gets, collected here with this module's data
    namespace, pytest_generate_tests, test_hidden_checks_catch_what_the_visible_ones_miss,
    test_the_solution_passes_visible_and_hidden_checks, test_the_verifier_gives_the_blank_release_zero,
    test_the_verifier_gives_the_solution_full_marks, test_visible_checks_name_the_mistake)

ID = "07_posterior_collapse"
pytestmark = pytest.mark.skipif(ID not in ASSIGNMENT_IDS, reason="notebook 07 is not in this course")
SOURCE = notebook("source", ID) if ID in ASSIGNMENT_IDS else None
TASKS = ("causal_mask", "active_units", "annealed_loss", "free_bits_loss")
POINTS = {"causal_mask": 3.0, "active_units": 2.0, "annealed_loss": 3.0, "free_bits_loss": 2.0}

MASK = ("def causal_mask(kernel_size, mask_type):\n    c = kernel_size // 2\n"
        "    mask = torch.zeros(kernel_size, kernel_size)\n    mask[:c] = 1.0\n"
        "    mask[c, : c + (mask_type == {open})] = 1.0\n    return mask{end}\n")
WRONG = {
    "type A closes the centre tap": ("causal_mask", MASK.format(open='"A"', end="")),
    "the mask is transposed": ("causal_mask", MASK.format(open='"B"', end=".T")),
    "the mask is flipped": ("causal_mask", MASK.format(open='"B"', end=".flip(0, 1)")),
    "threshold Var_x(mu_j(x)), not the mean itself": (
        "active_units", "def active_units(encoder, x, threshold=0.01):\n    return encoder(x)[0].mean(0) > threshold\n"),
    "or the posterior variance exp(log_var)": (
        "active_units", "def active_units(encoder, x, threshold=0.01):\n"
                        "    return encoder(x)[1].exp().mean(0) > threshold\n"),
    "the loss is the NEGATIVE ELBO: -mean(rec) + beta": (
        "annealed_loss", "def annealed_loss(rec, kl, step, warmup_steps):\n"
                         "    beta = min(1.0, step / warmup_steps) if warmup_steps else 1.0\n"
                         "    return rec.mean() + beta * kl.sum(1).mean()\n"),
    "sum the KL over the latent dimensions, then average over the batch": (
        "annealed_loss", "def annealed_loss(rec, kl, step, warmup_steps):\n"
                         "    beta = min(1.0, step / warmup_steps) if warmup_steps else 1.0\n"
                         "    return -rec.mean() + beta * kl.mean()\n"),
    "beta rises from 0 to 1 over the warm-up and then stays 1": (
        "annealed_loss", "def annealed_loss(rec, kl, step, warmup_steps):\n"
                         "    return -rec.mean() + step / warmup_steps * kl.sum(1).mean()\n"),
    "the max applies to the batch average of the total KL, not to each sample's KL": (
        "free_bits_loss", "def free_bits_loss(rec, kl, free_bits):\n"
                          "    return -rec.mean() + kl.sum(1).clamp(min=free_bits).mean()\n"),
    "the KL term is max(free_bits, KL), not KL + free_bits": (
        "free_bits_loss", "def free_bits_loss(rec, kl, free_bits):\n    return -rec.mean() + kl.sum(1).mean() + free_bits\n"),
    "below free_bits the KL term must be constant": (
        "free_bits_loss", "def free_bits_loss(rec, kl, free_bits):\n"
                          "    kl_mean = kl.sum(1).mean()\n"
                          "    return -rec.mean() + kl_mean + (free_bits - kl_mean).clamp(min=0).detach()\n"),
}
# Right values on the visible examples, wrong where the hidden checks look.
PASS_VISIBLE = {
    # the total KL as 2 x the mean entry: right for the visible 2 latent dimensions only
    "free_bits_loss": ("def free_bits_loss(rec, kl, free_bits):\n"
                       "    return -rec.mean() + (2 * kl.mean()).clamp(min=free_bits)\n",
                       "free-bits loss with free_bits = 0.0 vs the reference"),
    # hard-coded for the kernel sizes of the visible test
    "causal_mask": ("def causal_mask(kernel_size, mask_type):\n"
                    "    if kernel_size == 5:\n"
                    "        return torch.tensor([[1.0] * 5, [1.0] * 5, [1.0, 1.0, 1.0, 0.0, 0.0], [0.0] * 5, [0.0] * 5])\n"
                    "    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])\n"
                    "    m[1, 1] = float(mask_type == 'B')\n    return m\n",
                    "causal_mask(1, 'A') vs the reference"),
    # the loss is right, but its gradient with respect to kl is lost
    "annealed_loss": ("def annealed_loss(rec, kl, step, warmup_steps):\n"
                      "    beta = min(1.0, step / warmup_steps) if warmup_steps else 1.0\n"
                      "    return -rec.mean() + beta * kl.detach().sum(1).mean()\n",
                      "not have been used in the graph"),
}


def test_an_all_open_mask_fails_the_autograd_check(namespace):
    # Hidden checks alone (the reference comparison skipped): a decoder reading every pixel is not causal.
    exec("def causal_mask(kernel_size, mask_type):\n    return torch.ones(kernel_size, kernel_size)\n", namespace)
    hidden = task_test_code(SOURCE, "causal_mask", hidden=True).split("# Autograd:")[1].split("\n", 1)[1]
    exec("from dgm_course.jacobian import assert_close, batch_jacobian\n"
         "from dgm_course.vae import receptive_field as _reference_field\n", namespace)
    with pytest.raises(AssertionError, match="which inputs each output reads"):
        exec(hidden, namespace)


# ---------------------------------------------------------------------------------------------
# The out-of-kernel verifier

MIXED = {
    "causal_mask": MASK.format(open='"B"', end=".T"),  # transposed: reads later pixels
    # correct, written differently: NumPy, the unbiased variance (far from the threshold either way)
    "active_units": "import numpy as np\n\n"
                    "def active_units(encoder, x, threshold=0.01):\n"
                    "    mu = encoder(x)[0].detach().numpy()\n"
                    "    return torch.from_numpy(np.var(mu, axis=0, ddof=1) > threshold)\n",
    # beta never stops at 1: only d loss / d rec is right
    "annealed_loss": "def annealed_loss(rec, kl, step, warmup_steps):\n"
                     "    return -rec.mean() + step / max(warmup_steps, 1) * kl.sum(1).mean()\n",
    # the reference, reached at run time under another name: not in the worker's library
    "free_bits_loss": "import importlib\n\n"
                      "def free_bits_loss(rec, kl, free_bits):\n"
                      "    objectives = importlib.import_module('dgm_' + 'course.objectives')\n"
                      "    return -rec.mean() + getattr(objectives, 'free_bits' + '_kl')(kl, free_bits)\n",
}


# Issue 20: the library's masked convolutions reached by paths a per-cell static check cannot see:
# the set-up's PixelCNNDecoder by a computed name, MaskedConv2d by getattr, as a subclass of
# nn.Conv2d and among every class alive. The first that works answers the task.
REACHING = '''\
import gc

import dgm_course.vae


def attempts(kernel_size, mask_type):
    layer = "AB".index(mask_type)
    found = [
        lambda: globals()["PixelCNN" + "Decoder"](2, n_layers=2, kernel_size=kernel_size).convs[layer].mask,
        lambda: getattr(dgm_course.vae, "Masked" + "Conv2d")(1, 1, kernel_size, mask_type).mask,
    ]
    for classes in (nn.Conv2d.__subclasses__(), [c for c in gc.get_objects() if isinstance(c, type)]):
        found += [lambda c=c: c(1, 1, kernel_size, mask_type).mask for c in classes if c.__name__ == "MaskedConv2d"]
    return found


def causal_mask(kernel_size, mask_type):
    for attempt in attempts(kernel_size, mask_type):
        try:
            return attempt().detach().clone()
        except Exception:
            pass
    raise LookupError("no causal mask in reach")
'''


def alias_from_another_cell(solution: dict[str, str]) -> dict[str, str]:
    """``dgm_course.vae`` imported under an alias in one solution cell, its MaskedConv2d used in another."""
    return {**solution, "active_units": f"from dgm_course import vae as V\n\n{solution['active_units']}",
            "causal_mask": "def causal_mask(kernel_size, mask_type):\n"
                           "    return V.MaskedConv2d(1, 1, kernel_size, mask_type).mask.clone()\n"}


@pytest.fixture(scope="module")
def verified():
    solution = solution_answers(SOURCE, TASKS)
    importing = {**solution, "active_units": "from dgm_course.vae import active_units\n"}
    return verify_submissions(ID, {"mixed": MIXED, "importing the reference": importing},
                              {"reaching the reference": {"causal_mask": REACHING},
                               "alias": alias_from_another_cell(solution)})


def test_the_verifier_gives_exactly_the_points_of_the_correct_parts(verified):
    verdicts = verified["mixed"]
    assert scores(verdicts) == {
        "causal_mask": 0.0, "active_units": 2.0, "annealed_loss": 0.5, "free_bits_loss": 0.0,
    }, reasons(verdicts)
    # a transposed mask fails the reference masks and the grader's receptive field alike
    assert len(verdicts["causal_mask"].failed) == 3 and verdicts["causal_mask"].passed == []
    assert verdicts["annealed_loss"].passed == ["d loss / d rec = -1 / B (autograd)"], verdicts["annealed_loss"].passed
    assert "not available while grading" in verdicts["free_bits_loss"].reason


def test_a_reference_imported_costs_its_task(verified):
    verdicts = verified["importing the reference"]
    assert scores(verdicts) == {**POINTS, "active_units": 0.0}, reasons(verdicts)
    assert "uses the library's reference dgm_course.vae.active_units" in verdicts["active_units"].reason


@pytest.mark.filterwarnings("ignore::FutureWarning")  # gc's search touches torch's deprecated objects
def test_the_attacks_work_where_the_library_is_whole(namespace):
    """In this process (the whole library) every one of the attacks gets the reference mask: the
    verifier's 0 below is the worker's library's doing, not a broken attack."""
    import dgm_course.vae

    exec(REACHING, namespace)
    for k, t in [(3, "A"), (5, "B")]:
        found = namespace["attempts"](k, t)
        assert len(found) == 4  # the set-up's name, getattr, a subclass of nn.Conv2d, a class in gc
        assert all(torch.equal(attempt(), dgm_course.vae.causal_mask(k, t)) for attempt in found)
    namespace["V"] = dgm_course.vae
    exec(alias_from_another_cell(solution_answers(SOURCE, TASKS))["causal_mask"], namespace)
    assert torch.equal(namespace["causal_mask"](5, "B"), dgm_course.vae.causal_mask(5, "B"))


def test_the_masked_convolutions_are_out_of_reach_at_run_time(verified):
    verdicts = verified["reaching the reference"]
    assert scores(verdicts) == {**POINTS, "causal_mask": 0.0}, reasons(verdicts)
    assert "LookupError (cell causal_mask, line 23)" in verdicts["causal_mask"].reason


def test_an_alias_imported_in_one_cell_and_used_in_another_is_detected(verified):
    verdicts = verified["alias"]
    assert scores(verdicts) == {**POINTS, "causal_mask": 0.0}, reasons(verdicts)
    assert ("uses the library's reference dgm_course.vae.MaskedConv2d (line 2 of causal_mask)"
            in verdicts["causal_mask"].reason)
