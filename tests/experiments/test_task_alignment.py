"""Task-alignment tables from manifests and CPD summaries."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.experiments.task_alignment import (
    PUBLISHED_MAE_MEV,
    alignment_models,
    alignment_table,
    mae_table,
    paper_comparison,
    trained_archs,
)
from cpd_core.errors import InputError
from cpd_core.training.trainer import save


def _summary():
    rows = []
    for arch, values in {"painn": (0.5, 0.3, 0.1), "schnet": (0.2, 0.25, 0.0)}.items():
        for supervision, v in zip(("gap-trained", "U0-trained", "random-init"), values):
            for target in ("gap", "dipole"):
                rows.append({"arch": arch, "supervision": supervision, "target": target, "probe": "ridge",
                             "r2_geom": v if target == "gap" else -v})
    return pd.DataFrame(rows)


def test_alignment_table_compares_supervisions():
    table = alignment_table(_summary()).set_index(["arch", "target"])
    assert table.loc[("painn", "gap"), "gap-trained"] == pytest.approx(0.5)
    assert table.loc[("schnet", "dipole"), "random-init"] == 0.0
    assert list(table.columns) == ["gap-trained", "U0-trained", "random-init"]


@pytest.mark.skipif(not trained_archs(), reason="needs the committed QM9 checkpoints")
def test_task_alignment_probes_only_held_out_molecules_and_pairs_contrasts(monkeypatch, tmp_path):
    """Every probed molecule is in the test split; contrasts are paired differences with intervals."""
    from cpd_core.datasets.qm9 import load_qm9
    from cpd_core.experiments.task_alignment import alignment_contrasts, task_alignment
    from cpd_core.training import split_indices

    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))
    run = task_alignment(["schnet"], n=60, probes=["ridge"], targets=["gap"], cv=3, device="cpu", twin_seeds=(0, 1))
    parts = split_indices()
    seen = set(load_qm9(rows=np.concatenate([parts["train"], parts["val"]])).ids.tolist())
    test_ids = set(load_qm9(rows=parts["test"]).ids.tolist())
    assert len(run.ids) == 60 and set(run.ids.tolist()) <= test_ids and not set(run.ids.tolist()) & seen
    contrasts = alignment_contrasts(run).iloc[0]
    assert contrasts["gap − U0 lo"] <= contrasts["gap − U0"] <= contrasts["gap − U0 hi"]
    assert contrasts["gap − U0"] == pytest.approx(contrasts["gap-trained"] - contrasts["U0-trained"])
    assert "(2 seeds)" in contrasts["random-init spread"]


def test_paper_comparison_puts_ours_beside_the_papers():
    comparison = paper_comparison(_summary()).set_index("model")
    assert comparison.loc["PaiNN gap-trained", "paper"] == 0.53
    assert comparison.loc["PaiNN U0-trained", "ours"] == 0.3
    assert np.isnan(comparison.loc["MACE gap-trained", "ours"])  # MACE not in this summary


def test_unknown_architecture_is_refused():
    with pytest.raises(InputError, match="unknown architecture"):
        alignment_models(["nequip"])


def test_mae_table_reads_manifests(tmp_path):
    import torch

    for target, mae in (("gap", 126.0), ("U0", 70.0)):
        manifest = {"arch": "schnet", "target": target, "hparams": {}, "normalisation": {}, "n_parameters": 5,
                    "split": {"n_train": 1000, "n_test": 50},
                    "result": {"test_mae_meV": mae, "epochs": 3, "train_minutes": 1.5, "stopped_by": "time"},
                    "device": "CPU"}
        save(torch.nn.Linear(1, 1), manifest, tmp_path / "qm9" / f"schnet-{target}")
    assert trained_archs(tmp_path) == ["schnet"]
    table = mae_table(root=tmp_path).set_index("target")
    assert table.loc["gap", "ratio"] == pytest.approx(126.0 / PUBLISHED_MAE_MEV[("schnet", "gap")][0])
    assert table.loc["U0", "n_train"] == 1000


def _snapshot_run(root, arch, target, seeds, hparams):
    """A run folder with one snapshot per seed (random weights standing in for training progress)."""
    from cpd_core.models.trained import build_network

    nets = [build_network(arch, seed=s, **hparams) for s in seeds]
    snaps = [{"file": f"snapshots/step{100 * (i + 1):07d}.pt", "step": 100 * (i + 1), "epoch": i + 1,
              "epochs": float(i + 1), "minutes": float(i + 1), "val_mae_meV": 50.0 - i} for i in range(len(nets))]
    manifest = {"arch": arch, "target": target, "hparams": nets[-1].hparams, "snapshots": snaps,
                "normalisation": {"pooling": "mean", "scale": 1.0, "offset": 0.0, "atomref": [0.0] * 10}}
    save(nets[-1], manifest, root / "qm9" / f"{arch}-{target}",
         snapshots={s["file"]: net.state_dict() for s, net in zip(snaps, nets)})


def _painn_runs(tmp_path, monkeypatch, gap_seeds, u0_seeds):
    """Gap and U0 PaiNN runs with one snapshot per seed under ``tmp_path`` (checkpoints and cache pointed there)."""
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None:
        pytest.skip("needs qm9pack")
    monkeypatch.setenv("CPD_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))
    hparams = {"hidden": 8, "num_layers": 2, "num_rbf": 6}
    _snapshot_run(tmp_path, "painn", "gap", gap_seeds, hparams)
    _snapshot_run(tmp_path, "painn", "U0", u0_seeds, hparams)


def test_training_evolution_pairs_snapshots_at_equal_budget(tmp_path, monkeypatch):
    """Every snapshot probed on the same held-out molecules; snapshot i of gap vs of U0 is one paired contrast."""
    from cpd_core.experiments.task_alignment import evolution_archs, training_evolution

    _painn_runs(tmp_path, monkeypatch, (1, 2), (3, 4))
    assert evolution_archs(tmp_path) == ["painn"]
    run = training_evolution(n=50, cv=3, device="cpu", root=tmp_path)
    points = run.points.set_index(["trained on", "snapshot"])
    assert run.n == 50 and len(points) == 6  # random start + 2 snapshots, for each run
    assert points.loc[("gap", 0), "r2_geom"] == points.loc[("U0", 0), "r2_geom"]  # one common start
    assert points.loc[("gap", 2), "step"] == 200 and points.loc[("U0", 1), "val MAE (meV)"] == 50.0
    assert (points["r2_geom_lo"] <= points["r2_geom"]).all() and (points["r2_geom"] <= points["r2_geom_hi"]).all()
    contrasts = run.contrasts.set_index("snapshot")
    assert list(contrasts.index) == [1, 2] and contrasts.loc[2, "fraction of budget"] == 1.0
    for i in (1, 2):
        assert contrasts.loc[i, "gap − U0"] == pytest.approx(points.loc[("gap", i), "r2_geom"]
                                                             - points.loc[("U0", i), "r2_geom"])
        assert contrasts.loc[i, "lo"] <= contrasts.loc[i, "gap − U0"] <= contrasts.loc[i, "hi"]
    growth = run.growth.iloc[0]
    assert growth["growth"] == pytest.approx(growth["last"] - growth["first"])
    assert growth["growth"] == pytest.approx(contrasts.loc[2, "gap − U0"] - contrasts.loc[1, "gap − U0"])
    assert growth["lo"] <= growth["growth"] <= growth["hi"]
    from cpd_core.plots import evolution_plot

    left, right = evolution_plot(run).axes
    assert len(left.containers) == 2 and len(right.containers) == 1  # error bars: two runs; one contrast


def test_training_evolution_probes_a_spread_of_snapshots_keeping_their_numbers(tmp_path, monkeypatch):
    """snapshots=2 of three: the first and the last, numbered 1 and 3 of 3 (fraction 1/3 and 1), paired as before."""
    from cpd_core.experiments.task_alignment import training_evolution

    _painn_runs(tmp_path, monkeypatch, (1, 2, 5), (3, 4, 6))
    full = training_evolution(n=50, cv=3, device="cpu", root=tmp_path)
    some = training_evolution(n=50, cv=3, device="cpu", root=tmp_path, snapshots=2)
    assert sorted(set(some.points["snapshot"])) == [0, 1, 3] and list(some.contrasts["snapshot"]) == [1, 3]
    assert list(some.contrasts["fraction of budget"]) == pytest.approx([1 / 3, 1.0])
    kept = full.contrasts[full.contrasts["snapshot"].isin([1, 3])].reset_index(drop=True)
    pd.testing.assert_frame_equal(some.contrasts.reset_index(drop=True), kept)
    assert some.growth.iloc[0]["growth"] == pytest.approx(full.growth.iloc[0]["growth"])
    with pytest.raises(InputError, match="snapshots"):
        training_evolution(n=50, cv=3, device="cpu", root=tmp_path, snapshots=0)


def test_training_evolution_without_snapshots_says_how_to_get_them(tmp_path):
    from cpd_core.experiments.task_alignment import training_evolution

    with pytest.raises(InputError, match="cpu-evolution"):
        training_evolution(root=tmp_path)


def test_alignment_facts_quote_the_evolution():
    from cpd_core.experiments.task_alignment import EvolutionRun, alignment_facts

    contrasts = pd.DataFrame({"arch": ["painn"] * 2 + ["mace"] * 2, "target": ["gap", "dipole"] * 2,
                              "gap-trained": [.5, .1, .4, .0], "U0-trained": [.3, .1, .1, .0], "random-init": [.1] * 4,
                              "gap − U0": [.2, 0, .3, 0], "gap − U0 lo": [.1, -.1, .2, -.1],
                              "gap − U0 hi": [.3, .1, .4, .1], "gap − U0 resolved": [True, False, True, False],
                              "gap − random": [.4, 0, .3, 0], "gap − random resolved": [True, False, True, False],
                              "U0 − random": [.2, 0, 0, 0], "U0 − random resolved": [True, False, False, False]})
    maes = pd.DataFrame({"ratio": [2.8, 7.1], "n_train": [50000, 50000], "minutes": [20.1, 20.1], "device": ["CPU"] * 2})
    evo = EvolutionRun(pd.DataFrame(), pd.DataFrame({"arch": ["painn"] * 3, "snapshot": [3, 1, 2],
                                                     "gap − U0": [0.25, 0.05, 0.1], "lo": [0.1, -0.05, 0.0],
                                                     "hi": [0.4, 0.15, 0.2], "resolved": [True, False, False]}),
                       pd.DataFrame({"arch": ["painn"], "first": [0.05], "last": [0.25], "growth": [0.2],
                                     "lo": [0.05], "hi": [0.35], "resolved": [True]}), 50)
    run = type("Run", (), {"summary": pd.DataFrame({"n": [500]})})()
    facts = alignment_facts(run, contrasts, maes, evo)
    assert (facts["n_archs"], facts["gap_wins"], facts["u0_over_random"], facts["dip_gap_wins"]) == (2, 2, 1, 0)
    assert facts["mace_diff"] == "+0.30 [+0.20, +0.40]" and facts["mean_gap_minus_u0"] == "0.25"
    assert facts["painn_evo_first"] == "+0.05 [-0.05, +0.15]" and facts["painn_evo_last"] == "+0.25 [+0.10, +0.40]"
    assert facts["painn_evo_resolved"] == "1 of 3" and facts["evo_grew"] == 1 and facts["evo_shrank"] == 0
    assert facts["painn_evo_growth"] == "+0.20 [+0.05, +0.35]" and facts["evo_n"] == 50
