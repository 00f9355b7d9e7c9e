"""Irreps routing: channels, paired contrasts, the training effect and verdicts on planted data."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.experiments.irreps_routing import (
    RoutingRun,
    channel,
    channels,
    rank_table,
    route,
    route_blocks,
    routing_facts,
    routing_verdicts,
    training_effect,
    twin_pairs,
)


pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def _planted(n=400, seed=0):
    rng = np.random.default_rng(seed)
    counts = np.column_stack([rng.integers(2, 16, n), rng.integers(1, 9, n), rng.integers(0, 4, n)])
    C = np.column_stack([counts, np.ones(n)])
    gap, dipole, homo = (rng.normal(size=n) for _ in range(3))
    ys = {"gap": gap, "dipole": dipole, "homo": homo}

    def carrying(*signals):
        return np.column_stack([s + 0.3 * rng.normal(size=n) for s in signals] + [rng.normal(size=(n, 4))])

    return C, ys, (gap, dipole, homo), carrying, rng


def test_channel_names():
    assert channel("layer1/L2@atom-norm") == "L2@atom-norm" and channel("hidden2") == "L0"
    assert channel("atomic_energy") is None
    kinds = channels(["layer1/L1@pooled-norm", "layer1/L0", "layer2/L1@atom-norm", "layer2/L0", "aev/radial"])
    assert list(kinds) == ["L0", "L1@atom-norm", "L1@pooled-norm"] and kinds["L0"] == ["layer1/L0", "layer2/L0"]


def _run():
    """A trained model whose L1@atom-norm channel holds the dipole and L0 the gap; its twin holds both
    in both channels (no routing); a scalar target (homo) in L0 only."""
    C, ys, (gap, dipole, homo), carrying, rng = _planted()
    trained = {"layer1/L0": carrying(gap, homo), "layer2/L0": rng.normal(size=(400, 5)),
               "layer1/L1@atom-norm": carrying(dipole), "layer1/L1@pooled-norm": rng.normal(size=(400, 5))}
    twin = {"layer1/L0": carrying(gap, dipole, homo), "layer1/L1@atom-norm": carrying(gap, dipole, homo),
            "layer1/L1@pooled-norm": rng.normal(size=(400, 5))}
    chans, contrasts, results = [], [], {}
    for name, blocks, status, twin_of in (("m", trained, "original", ""), ("m-random", twin, "random-init", "m")):
        info = {"molecules": "synthetic", "model": name, "seed": 0, "family": "MACE", "status": status,
                "twin_of": twin_of}
        a, b, r = route_blocks(blocks, C, ys, info, cv=4)
        chans += a
        contrasts += b
        results.update({(name, 0, t, k): v for (t, k), v in r.items()})
    return RoutingRun(pd.DataFrame(chans), pd.DataFrame(contrasts), results, {"synthetic": 400})


def test_planted_routing_is_found_on_its_channel_only():
    run = _run()
    v = routing_verdicts(run).set_index(["model", "channel"])
    assert v.loc[("m", "L1@atom-norm"), "routing"]
    assert not v.loc[("m", "L1@pooled-norm"), "dipole → L"] and v.loc[("m", "L1@pooled-norm"), "gap → L0"]
    assert not v.loc[("m-random", "L1@atom-norm"), "routing"]
    c = run.contrasts.set_index(["model", "target", "channel"])
    assert c.loc[("m", "dipole", "L1@atom-norm"), "delta_lo"] > 0.5
    assert c.loc[("m", "gap", "L1@atom-norm"), "delta_hi"] < -0.5
    # chosen among that channel's layers: L0's best layer is the one with the gap
    ch = run.channels.set_index(["model", "target", "channel"])
    assert ch.loc[("m", "gap", "L0"), "layer"] == "layer1"


def test_training_effect_is_a_paired_difference_of_differences():
    run = _run()
    assert twin_pairs(run) == [("m", "m-random")]
    eff = training_effect(run).set_index(["target", "channel"])
    row = eff.loc[("dipole", "L1@atom-norm")]
    assert row["training"] == pytest.approx(row["delta trained"] - row["delta twin"])
    assert row["training_lo"] > 0.3 and row["resolved"]


def test_rank_table_and_facts():
    run = _run()
    ranks = rank_table(run).set_index(["model", "channel"])
    assert "homo (scalar)" in ranks.columns and "dipole (vector)" in ranks.columns
    assert ranks.loc[("m", "L1@atom-norm"), "vector only"]          # helps the dipole, no scalar target
    assert not ranks.loc[("m-random", "L1@atom-norm"), "vector only"]
    facts = routing_facts(run)
    assert facts["routing_trained"] == "m" and facts["routing_twins"] == "none"
    assert "seed" in routing_verdicts(run).columns
    assert facts["routing_atom_norm"] == "m" and facts["routing_pooled_norm"] == "none"
    assert facts["training_raises_dipole"] == "m" and facts["n_pairs"] == 1
    assert facts["vector_only"] == "m" and facts["scalar_targets"] == "gap, homo"


def test_route_skips_models_without_vectors(qm9_loaded):
    run = route(["ani2x", "ani2x-random"], n=60, cv=3, device="cpu")
    assert run.channels.empty and run.contrasts.empty and run.n == {"QM9 subset": 60}
