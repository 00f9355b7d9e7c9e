"""Task-alignment tables from manifests and CPD summaries."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.experiments.alignment import (
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
    from cpd_core.experiments.alignment import alignment_contrasts, task_alignment
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
