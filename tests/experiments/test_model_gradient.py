"""The disentanglement-gradient experiment: nested block choice, twins over seeds, controls, tables."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.datasets import qm9 as qm9_module
from cpd_core.errors import InputError
from cpd_core.experiments.model_gradient import (
    best_blocks,
    default_models,
    family_order,
    gradient_table,
    block_kind,
    gradient_facts,
    model_gradient,
    paper_comparison,
    pick,
    twin_gaps,
)
from cpd_core.models import REGISTRY
from cpd_core.models.base import shared_dir


pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def test_default_models_are_offline_and_without_caveats():
    names = default_models()
    assert names and all(REGISTRY[m].offline and not REGISTRY[m].caveat for m in names)
    assert "mace-mp-0-medium" not in names and "megnet-mp-bandgap" not in names
    assert "ani2x" in names and "ani2x-random" in names


def test_with_partner_drops_twins_whose_trained_model_is_not_run():
    everything, partnered = default_models(), default_models("with-partner")
    assert set(partnered) < set(everything)
    dropped = set(everything) - set(partnered)
    assert dropped and all(REGISTRY[m].status == "random-init" and REGISTRY[m].twin_of not in everything
                           for m in dropped)
    with pytest.raises(InputError, match="unknown model set"):
        default_models("most")


def test_book_set_is_the_registered_subset_of_book_set():
    from cpd_core.experiments.model_gradient import BOOK_SET

    book = default_models("book")
    assert book == [m for m in default_models() if m in BOOK_SET] and set(book) == set(BOOK_SET)


def test_unknown_model_raises_before_work():
    with pytest.raises(InputError, match="unknown model"):
        model_gradient(["ani2x-aev", "nope"], n=10)


def test_gradient_on_a_small_subset(qm9_loaded):
    run = model_gradient(["ani2x", "ani2x-random"], n=120, probes=["ridge"], cv=3, device="cpu",
                         twin_seeds=(0, 1))
    summary, scan = run.summary, run.scan
    assert set(summary["model"]) == {"ani2x", "ani2x-random"}
    main = summary[~summary["control"]]
    assert set(main["target"]) == {"gap", "dipole"} and set(summary["probe"]) == {"ridge"}
    assert (summary["n"] == 120).all() and run.dropped == []
    # twins drawn with each seed, the trained model once; controls for each
    assert sorted(summary[summary["model"] == "ani2x-random"]["seed"].unique()) == [0, 1]
    assert set(summary[summary["control"]]["target"]) == {"mass (control)", "mass/atom (control)", "gap (shuffled)"}
    assert (summary[summary["control"]]["seed"] == 0).all()      # controls once per model
    # every score has an interval around it; the naive maximum is the scan's, and above the nested score
    # as a rule (not per row: a block other than the naive winner can win each fold)
    assert (summary["r2_geom_lo"] <= summary["r2_geom"]).all() and (summary["r2_geom"] <= summary["r2_geom_hi"]).all()
    for (model, seed, target), row in summary.set_index(["model", "seed", "target"]).iterrows():
        sub = scan[(scan["model"] == model) & (scan["seed"] == seed) & (scan["target"] == target)]
        assert row["naive_r2_geom"] == pytest.approx(sub["r2_geom"].max())
    assert (summary["naive_r2_geom"] >= summary["r2_geom"] - 1e-12).mean() >= 0.75
    assert set(scan[scan["model"] == "ani2x-random"]["block"]) == {
        "aev", "hidden1", "hidden2", "hidden3", "atomic_energy"}
    # the linear-in-counts control is exactly out of reach of a linear probe
    mass = summary[summary["target"] == "mass (control)"]["r2_geom"]
    assert (mass < 0.02).all()          # no better than predicting the training mean
    table = gradient_table(summary)
    assert list(table.index) == ["ani2x", "ani2x-random"]  # trained before twin
    assert {"r2_geom gap", "r2_geom_lo gap", "r2_geom_hi gap"} <= set(table.columns)
    gaps = twin_gaps(run)
    assert len(gaps) == 2 and (gaps["twin seeds"] == 2).all()
    assert (gaps["learned_lo"] <= gaps["learned"]).all() and (gaps["learned"] <= gaps["learned_hi"]).all()
    assert run.routing.empty  # ANI has no L >= 1 blocks
    facts = gradient_facts(run, n_seeds=2)
    assert facts["n_mol"] == 120 and facts["n_models"] == 2 and facts["n_twins"] == 1 and facts["n_seeds"] == 2
    assert facts["best_model"] == facts["worst_model"] == "ani2x" and facts["twin_best_model"] == "ani2x-random"
    assert facts["best_gap"].startswith(f"{pick(summary, 'ani2x', 'gap', 'ridge'):.3f} [")
    assert facts["ani2x_mlp"] == facts["so3lr_gap"] == "not run here" and facts["gbt_min"] == facts["gbt_twin_min"] == "n/a"
    assert facts["trees"].startswith("Gradient-boosted trees were not run at this scale")
    assert facts["n_equivariant"] == 0 and facts["dropped"].startswith("none left out")
    assert facts["learned_n"] == 1 and facts["best_vs_worst"]  # a sentence, even for one model against itself
    comparison = paper_comparison(summary).set_index("our model")
    assert comparison.loc["ani2x (hidden layers, real weights)", "ours"] == pick(summary, "ani2x", "gap", "ridge")
    assert comparison["ours"].isna().sum() == 3  # so3lr, sevennet-0 and the MLP probe were not run here


def test_nonlinear_probes_skip_the_twins_when_asked(qm9_loaded):
    """nonlinear_twins=False: trees for the trained model only; the twin keeps its ridge rows and controls."""
    kwargs = dict(n=80, probes=["ridge", "gbt"], cv=3, device="cpu", twin_seeds=(0,), targets=["gap"])
    run = model_gradient(["ani2x", "ani2x-random"], **kwargs)
    both = run.summary
    facts = gradient_facts(run, n_seeds=1)  # trees' range: trained models, and their twins beside them
    assert facts["gbt_min"] == facts["gbt_max"] == f"{pick(both, 'ani2x', 'gap', 'gbt'):.2f}"
    assert facts["gbt_twin_min"] == f"{pick(both, 'ani2x-random', 'gap', 'gbt'):.2f}"
    assert facts["trees"].startswith(f"Gradient-boosted trees score {facts['gbt_min']}–{facts['gbt_max']} ")
    trained_only = model_gradient(["ani2x", "ani2x-random"], nonlinear_twins=False, **kwargs).summary
    probes = lambda summary, model: set(summary[(summary["model"] == model) & ~summary["control"]]["probe"])
    assert probes(both, "ani2x-random") == {"ridge", "gbt"} == probes(both, "ani2x")
    assert probes(trained_only, "ani2x-random") == {"ridge"} and probes(trained_only, "ani2x") == {"ridge", "gbt"}
    kept = both[both["probe"] == "ridge"].reset_index(drop=True)
    pd.testing.assert_frame_equal(trained_only[trained_only["probe"] == "ridge"].reset_index(drop=True), kept)


def test_a_second_run_builds_no_network_scans_nothing_and_gives_the_same_numbers(qm9_loaded, monkeypatch):
    """Features, each model's cache key (its memo) and the block scans are cached by the first run."""
    import cpd_core.models as models
    import cpd_core.selection as selection

    kwargs = dict(n=80, probes=["ridge"], cv=3, device="cpu", twin_seeds=(0, 1))
    first = model_gradient(["ani2x", "ani2x-random"], **kwargs)
    builds, scans = [], []
    real_load, real_scan = models.load, selection._scan_block
    monkeypatch.setattr(models, "load", lambda name, *a, **kw: builds.append(name) or real_load(name, *a, **kw))
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scans.append(call) or real_scan(*call))
    again = model_gradient(["ani2x", "ani2x-random"], **kwargs)
    assert builds == [] and scans == []
    pd.testing.assert_frame_equal(again.summary, first.summary)
    pd.testing.assert_frame_equal(again.scan, first.scan)


def test_prescanned_targets_are_cached_for_later_chapters_but_not_reported(qm9_loaded, monkeypatch):
    """prescan=("homo",): the summary has only gap; a later scan of HOMO on the same blocks computes nothing."""
    import cpd_core.selection as selection
    from cpd_core.experiments.probe_set import probe_set

    kwargs = dict(n=80, probes=["ridge"], cv=3, device="cpu", twin_seeds=(0,), targets=["gap"], controls=False)
    run = model_gradient(["ani2x"], prescan=("homo", "gap"), **kwargs)
    assert set(run.summary["target"]) == {"gap"} and set(run.scan["target"]) == {"gap"}
    ps = probe_set(["ani2x"], n=80, seed=0)
    scans, real_scan = [], selection._scan_block
    monkeypatch.setattr(selection, "_scan_block", lambda *call: scans.append(call) or real_scan(*call))
    blocks = ps.blocks("ani2x", device="cpu")
    homo = selection.scan_blocks(blocks, ps.C, ps.targets(["homo"]), cv=3, seed=0, cache=True)
    assert scans == [] and homo.choose("homo").block in blocks
    selection.scan_blocks(blocks, ps.C, ps.targets(["lumo"]), cv=3, seed=0, cache=True)
    assert len(scans) == len(blocks)  # not prescanned: computed
    with pytest.raises(InputError, match="target"):
        model_gradient(["ani2x"], prescan=("colour",), **kwargs)


@pytest.mark.skipif(not (shared_dir() / "models" / "matgl").exists(), reason="needs ../shared matgl checkpoints")
def test_models_share_the_molecules_every_model_supports(qm9_loaded):
    n = 400
    qm9 = qm9_module.load_qm9(n=n, seed=0)
    with_f = [int(i) for i, z in zip(qm9.ids, qm9.numbers) if 9 in set(z.tolist())]
    assert with_f, "pick a subset with fluorine"
    run = model_gradient(["ani2x-aev", "so3net-ani1x"], n=n, probes=["ridge"], targets=["gap"], cv=3,
                         device="cpu", controls=False)
    assert run.dropped == with_f  # so3net-ani1x covers H, C, N, O only
    assert (run.summary["n"] == n - len(with_f)).all()
    # so3net has L >= 1 blocks: the routing table compares invariants, nested and paired
    row = run.routing.iloc[0]
    assert row["model"] == "so3net-ani1x" and row["pooled-norm_lo"] <= row["pooled-norm"] <= row["pooled-norm_hi"]
    assert row["pooled − L0_lo"] <= row["pooled − L0"] <= row["pooled − L0_hi"]


def test_best_blocks_family_order_and_kinds():
    summary = pd.DataFrame({
        "model": ["a", "a-r", "b", "b-r"], "family": ["A", "A", "B", "B"], "twin_of": ["", "a", "", "b"],
        "status": ["original", "random-init", "original", "random-init"], "target": ["gap"] * 4,
        "probe": ["ridge"] * 4, "r2_geom": [0.2, 0.1, 0.6, 0.3], "seed": 0, "control": False})
    assert family_order(summary) == ["B", "A"]
    scan = pd.DataFrame({"model": ["m"] * 4, "target": ["dipole"] * 4,
                         "block": ["layer1/L0", "layer1/L1@atom-norm", "layer1/L1@pooled-norm", "layer2/L0"],
                         "r2_geom": [0.1, 0.2, 0.5, 0.3]})
    assert best_blocks(scan) == {"dipole": "layer1/L1@pooled-norm"}
    assert [block_kind(b) for b in scan["block"]] == ["L0", "atom-norm", "pooled-norm", "L0"]


def test_model_rows_run_the_nonlinear_folds_together_in_the_per_target_order():
    """_model_rows pools every nonlinear probe's folds; rows and results keep the order target × probe,
    and each result equals the nested probe run on its own."""
    from cpd_core.experiments.model_gradient import _model_rows
    from cpd_core.selection import scan_blocks
    from cpd_core.synthetic import planted

    d = planted(n=240, comp_share=0.3, geom_share=0.4, n_features=6, seed=4)
    blocks = {"a": d.H, "b": d.H[:, ::-1] ** 2}
    ys = {"gap": d.y, "dipole": d.y[::-1].copy(), "mass (control)": d.C[:, 0].copy()}
    rows, scan, results, block_scan = _model_rows("m", 0, blocks, d.C, ys, ["ridge", "mlp", "gbt"], 3,
                                                  {"mass (control)"}, nonlinear=True)
    order = [(r["target"], r["probe"]) for r in rows]
    assert order == [("gap", "ridge"), ("gap", "mlp"), ("gap", "gbt"), ("dipole", "ridge"), ("dipole", "mlp"),
                     ("dipole", "gbt"), ("mass (control)", "ridge")]
    assert [k[2:] for k in results] == order
    alone = scan_blocks(blocks, d.C, ys, cv=3, seed=0).choose("dipole").probe("gbt", seed=0, full=False)
    pd.testing.assert_frame_equal(results[("m", 0, "dipole", "gbt")].folds, alone.folds)
    assert np.isnan(results[("m", 0, "gap", "mlp")].r2_full)
