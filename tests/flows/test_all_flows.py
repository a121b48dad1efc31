"""Generic checks for every exported flow, in float64, over several seeds, in both directions.

- ``log_det`` equals log|det| of the autograd Jacobian (atol from the case, 1e-8 by default);
- ``inverse(forward(x)) == x`` and the two log-dets are negatives of each other;
- log-dets add under ``Compose``;
- log-dets have shape (batch,) and follow the input's dtype;
- a direction that is not implemented raises ``NotImplementedError`` (never garbage).
"""

import importlib
import inspect
import pkgutil

import pytest
import torch

import dgm_course.flows as flows
from dgm_course.flows import Compose, Flow, Inverse
from dgm_course.jacobian import assert_close, assert_inverse, assert_log_det_matches_jacobian

from . import __path__ as _here

CASES = []
for _info in pkgutil.iter_modules(_here):
    if _info.name.startswith("cases_"):
        CASES += importlib.import_module(f"{__package__}.{_info.name}").CASES

SEEDS = [0, 1, 2]
# Generic wrappers whose behaviour is tested here directly through the cases of other flows.
WRAPPERS = {Flow, Compose, Inverse}


def test_every_exported_flow_has_a_case():
    exported = {
        obj for name in flows.__all__
        if inspect.isclass(obj := getattr(flows, name)) and issubclass(obj, Flow) and obj not in WRAPPERS
    }
    covered = {case.cls for case in CASES}
    missing = sorted(cls.__name__ for cls in exported - covered)
    assert not missing, f"exported flows without a test case in tests/flows/cases_*.py: {missing}"


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


params = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
seeds = pytest.mark.parametrize("seed", SEEDS)


@params
@seeds
def test_forward_log_det_matches_autograd(case, seed):
    flow, x = case.make(seed)
    if "forward" not in case.directions:
        with pytest.raises(NotImplementedError):
            flow(x)
        return
    assert_log_det_matches_jacobian(flow, x, "forward", atol=case.atol, rtol=0)


@params
@seeds
def test_inverse_log_det_matches_autograd(case, seed):
    flow, x = case.make(seed)
    z = flow(x)[0].detach() if "forward" in case.directions else x
    if "inverse" not in case.directions:
        with pytest.raises(NotImplementedError):
            flow.inverse(z)
        return
    assert_log_det_matches_jacobian(flow, z, "inverse", atol=case.atol, rtol=0)


@params
@seeds
def test_round_trip_and_opposite_log_dets(case, seed):
    if set(case.directions) != {"forward", "inverse"}:
        pytest.skip("one direction only")
    flow, x = case.make(seed)
    assert_inverse(flow, x, atol=case.atol, rtol=1e-8)


@params
def test_log_dets_add_under_compose(case):
    if "forward" not in case.directions:
        pytest.skip("forward not implemented")
    f1, x = case.make(0)
    f2, _ = case.make(1)
    # f2^-1 maps noise to data, so it accepts f1's output whatever the flow's domain is
    if "inverse" in case.directions:
        f2 = Inverse(f2)
    both = Compose([f1, f2])
    z, ld = both(x)
    z1, ld1 = f1(x)
    z2, ld2 = f2(z1)
    assert_close(z, z2, atol=1e-12, what="Compose output")
    assert_close(ld, ld1 + ld2, atol=1e-10, what="Compose log_det")
    assert_log_det_matches_jacobian(both, x, "forward", atol=2 * case.atol, rtol=0)
    if "inverse" in case.directions:
        x_rec, ld_inv = both.inverse(z.detach())
        assert_close(x_rec, x, atol=1e-7, rtol=1e-7, what="Compose inverse")
        assert_close(ld_inv, -ld, atol=2 * case.atol, rtol=1e-8, what="Compose inverse log_det")


@params
def test_log_det_follows_dtype_and_shape_in_float32(case):
    flow, x = case.make(0)
    flow, x = flow.float(), x.float()
    for direction in case.directions:
        fn = flow.forward if direction == "forward" else flow.inverse
        inp = x if direction == "forward" or "forward" not in case.directions else flow(x)[0].detach()
        out, ld = fn(inp)
        assert ld.shape == (x.shape[0],) and ld.dtype == torch.float32 and out.dtype == torch.float32
        assert torch.isfinite(ld).all() and torch.isfinite(out).all()


def test_compose_trajectory_and_order():
    f1, x = CASES[0].make(0)
    f2, _ = CASES[0].make(1)
    both = Compose([f1, f2])
    z, ld, traj = both(x, return_trajectory=True)
    assert len(traj) == 3 and traj[0] is x and torch.equal(traj[-1], z)
    x_rec, _, back = both.inverse(z, return_trajectory=True)
    assert len(back) == 3
    assert_close(back[1], traj[1], atol=1e-12, what="inverse visits the same states in reverse")
    # the inverse must apply f2^-1 first: swapping the order gives a different answer
    wrong = f1.inverse(z)[0]
    assert not torch.allclose(wrong, f2.inverse(z)[0])


def test_inverse_wrapper_swaps_directions():
    f, x = CASES[0].make(0)
    inv = Inverse(f)
    assert_close(inv(x)[0], f.inverse(x)[0], atol=0, what="Inverse.forward")
    assert_close(inv.inverse(x)[1], f(x)[1], atol=0, what="Inverse.inverse log_det")
