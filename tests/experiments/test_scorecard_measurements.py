"""What each chapter records for the scorecard: the right rows, signs, intervals and n, from its run's tables."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cpd_core import cpd
from cpd_core.scorecard import CLAIMS, verdict


def _by_claim(ms):
    out = {}
    for m in ms:
        out.setdefault(m.claim, []).append(m)
    return out


def test_routing_measurements_sign_each_contrast_as_its_claim_states():
    from cpd_core.experiments.irreps_routing import RoutingRun, routing_measurements

    rows = []
    for model, target, delta in (("mace-qm9-U0", "dipole", 0.2), ("mace-qm9-U0", "gap", -0.3),
                                 ("visnet-qm9-U0", "dipole", 0.01), ("painn-qm9-U0", "dipole", 0.5)):
        for channel in ("L1@atom-norm", "L1@pooled-norm"):
            rows.append({"molecules": "held-out test split", "model": model, "seed": 0, "target": target,
                         "channel": channel, "delta": delta, "delta_lo": delta - 0.05, "delta_hi": delta + 0.05})
    run = RoutingRun(pd.DataFrame(), pd.DataFrame(rows), {}, {"held-out test split": 480})
    got = _by_claim(routing_measurements(run))
    assert set(got) == {"mace_routing_dipole", "mace_routing_gap", "visnet_no_routing"}   # PaiNN is no claim
    assert all(len(v) == 2 for v in got.values())                                       # both invariants
    gap = got["mace_routing_gap"][0]          # the claim is L0 − L1: our L1 − L0 = −0.3 becomes +0.3
    assert gap.value == pytest.approx(0.3) and gap.lo == pytest.approx(0.25) and gap.hi == pytest.approx(0.35)
    assert gap.n == 480 and not gap.comparable and "trained here" in gap.reason
    assert got["mace_routing_dipole"][0].value == pytest.approx(0.2)


def test_alignment_measurements_ranges_over_trained_networks_and_paired_contrasts():
    from cpd_core.experiments.task_alignment import alignment_measurements

    summary = pd.DataFrame([
        {"arch": a, "supervision": s, "probe": "ridge", "control": False, "target": "gap", "n": 500, "r2_geom": v}
        for a, s, v in (("painn", "gap-trained", 0.5), ("painn", "U0-trained", 0.3), ("painn", "random-init", 0.9),
                        ("mace", "gap-trained", 0.4), ("mace", "U0-trained", 0.2))])
    contrasts = pd.DataFrame([{"arch": "painn", "target": "gap", "gap − U0": 0.2, "gap − U0 lo": 0.1,
                               "gap − U0 hi": 0.3}])
    maes = pd.DataFrame({"device": ["CPU"], "minutes": [20.0], "ratio": [3.0]})
    got = _by_claim(alignment_measurements(SimpleNamespace(summary=summary), contrasts, maes))
    r = got["trained_range"][0]
    assert (r.lo, r.hi) == (0.2, 0.5)                  # the random-init twin (0.9) is not a trained network
    g = got["gap_trained_range"][0]
    assert (g.lo, g.hi) == (0.4, 0.5)
    p = got["painn_alignment"][0]
    assert (p.value, p.lo, p.hi, p.n) == (0.2, 0.1, 0.3, 500) and p.comparable and "CPU" in p.reason
    assert "mace_alignment" not in got                 # no contrast row for MACE: nothing recorded
    assert verdict(CLAIMS["painn_alignment"], p)[0] == "reproduced"   # the paper's 0.22 lies in [0.1, 0.3]


def test_bases_measurement_is_the_trees_range_on_the_default_basis():
    from cpd_core.experiments.composition_bases import BasesRun, bases_measurements

    rows = [{"model": m, "target": t, "basis": b, "probe": p, "r2_geom": v}
            for m, t, b, p, v in (("a", "mass", "counts", "gbt", 0.7), ("b", "mass/atom", "counts", "gbt", 0.9),
                                  ("a", "mass", "poly2", "gbt", 0.1), ("a", "mass", "counts", "ridge", 0.0),
                                  ("a", "gap", "counts", "gbt", 0.5))]
    rows.append({"model": "b", "target": "mass", "basis": "counts", "probe": "gbt", "r2_geom": 0.2})
    mass, per_atom = bases_measurements(BasesRun(pd.DataFrame(rows), pd.DataFrame(), {}, 400))
    assert (mass.claim, mass.lo, mass.hi, mass.n) == ("gbt_inflation", 0.2, 0.7, 400) and "mass," in mass.what
    assert (per_atom.lo, per_atom.hi) == (0.9, 0.9) and "mass/atom" in per_atom.what


def test_gradient_and_aev_measurements_read_the_stand_ins_and_pair_them():
    from cpd_core.experiments.ani2x_aev import aev_measurements
    from cpd_core.experiments.model_gradient import SCORECARD_STAND_INS, gradient_measurements

    rng = np.random.default_rng(0)
    n = 300
    C = np.column_stack([rng.integers(0, 5, n), np.ones(n)])
    y = rng.normal(size=n)
    good = np.column_stack([y + 0.3 * rng.normal(size=n), rng.normal(size=(n, 3))])
    bad = rng.normal(size=(n, 4))
    results = {(m, 0, "gap", "ridge"): cpd(H, C, y, seed=0) for m, H in
               (("so3lr", good), ("sevennet-0", good), ("ani2x-aev", bad))}
    run = SimpleNamespace(results=results, summary=pd.DataFrame({"n": [n]}))
    got = _by_claim(gradient_measurements(run))
    assert got["mace_gap_ridge"][0].what.startswith(SCORECARD_STAND_INS["mace_gap_ridge"][0])
    assert not got["mace_mp0_gap"][0].comparable
    order = got["model_ordering"][0]
    assert order.lo > 0 and order.n == n       # the informative stand-in beats noise, paired
    aev = SimpleNamespace(n=n, summary=pd.DataFrame([
        {"target": "gap", "probe": "ridge", "r2_geom": -0.1, "r2_geom_lo": -0.2, "r2_geom_hi": 0.0},
        {"target": "gap", "probe": "mlp", "r2_geom": 0.4, "r2_geom_lo": 0.3, "r2_geom_hi": 0.5}]))
    got = _by_claim(aev_measurements(aev))
    assert got["ani_gap_ridge"][0].value == -0.1 and got["ani_gap_mlp"][0].hi == 0.5
