"""The crystal chapter's experiment: CPD on periodic structures, its checks, tables and scorecard row."""

import numpy as np
import pandas as pd
import pytest

from cpd_core.datasets import Dataset
from cpd_core.datasets.crystals import load_mp
from cpd_core.errors import InputError
from cpd_core.experiments.crystals import (
    CrystalRun,
    composition_baselines,
    crystal_cpd,
    crystal_measurements,
    crystal_models,
    crystal_subset,
    element_coverage,
    force_check,
    prediction_check,
    single_split,
)
from cpd_core.experiments.model_gradient import controls_table, gradient_table, twin_gaps
from cpd_core.models.base import shared_dir

pytestmark = pytest.mark.usefixtures("tmp_cache")
needs_data = pytest.mark.skipif(not (shared_dir() / "data" / "mp").is_dir(), reason="../shared/data is absent")


@pytest.fixture
def crystals():
    return load_mp(n=60, seed=3)


def test_models_book_all_and_twins():
    book = crystal_models("book")
    assert "sevennet-0" in book and "sevennet-0-random" in book
    assert "megnet-mp-bandgap" not in crystal_models("all")  # it keeps a caveat
    assert crystal_models(["chgnet-0.3.0"], twins=False) == ["chgnet-0.3.0"]
    with pytest.raises(InputError, match="unknown model"):
        crystal_models(["nope"])


def test_bad_inputs_raise_before_work():
    molecules = Dataset.from_arrays([[1, 1]], [[[0, 0, 0], [0.7, 0, 0]]])
    with pytest.raises(InputError, match="no cells"):
        crystal_cpd(["chgnet-0.3.0"], molecules)
    cell = Dataset.from_arrays([[11, 17]], [[[0, 0, 0], [2.8, 0, 0]]], cells=[np.eye(3) * 5.6], name=None)
    with pytest.raises(InputError, match="composition basis"):
        crystal_cpd(["chgnet-0.3.0"], cell, basis="weights")
    with pytest.raises(InputError, match="no target"):
        crystal_cpd(["chgnet-0.3.0"], cell, targets=["band_gap"])


@needs_data
def test_cpd_on_crystals_with_twin_controls_and_an_unsupported_structure(crystals):
    from cpd_core.models.lazy import load_lazy

    # one structure made of an element M3GNet does not embed: counted and left out for every model
    outside = next(z for z in range(1, 95) if z not in load_lazy("m3gnet-mp-2021", device="cpu").elements)
    numbers = list(crystals.numbers)
    numbers[5] = np.full_like(numbers[5], outside)
    data = Dataset("mp-test", crystals.ids, numbers, crystals.positions, crystals.targets, crystals.cells,
                   crystals.pbc)
    run = crystal_cpd(["m3gnet-mp-2021", "m3gnet-mp-random"], data, probes=["ridge"], cv=3, device="cpu")
    assert isinstance(run, CrystalRun) and run.n_structures == 59
    assert run.unsupported["id"].unique().tolist() == [crystals.ids[5]]  # listed per model that lacks the element
    assert set(run.unsupported["model"]) == {"m3gnet-mp-2021", "m3gnet-mp-random"}
    s = run.summary
    gap = s[s["target"] == "band_gap"]
    assert (gap["n"] == int(crystals.targets["band_gap"].notna().sum() - np.isfinite(crystals.targets["band_gap"].iloc[5])
                           )).all()
    assert (s[s["target"] == "density"]["n"] == 59).all()
    assert {"mass (control)", "mass/atom (control)", "density (shuffled)", "band_gap (shuffled)"} <= set(s["target"])
    # cell mass is linear in counts: a linear probe of the residual reads nothing (≤ 0 up to fold noise)
    mass = s[(s["target"] == "mass (control)") & (s["model"] == "m3gnet-mp-2021")]
    assert float(mass["r2_geom"].iloc[0]) < 0.05
    wide = gradient_table(run.summary)
    assert list(wide.index) == ["m3gnet-mp-2021", "m3gnet-mp-random"]
    assert "r2_geom band_gap" in wide and "r2_geom density" in wide
    assert not controls_table(run.summary).empty
    diffs = twin_gaps(run)
    assert set(diffs["target"]) == {"band_gap", "density", "volume_per_atom"}
    split = single_split(run)
    r = run.results[("m3gnet-mp-2021", 0, "density", "ridge")]
    row = split[(split["model"] == "m3gnet-mp-2021") & (split["target"] == "density")].iloc[0]
    assert row["n_test"] == int((r.fold_of == 0).sum())
    assert row["r2_geom"] == pytest.approx(r.folds.loc[0, "r2_geom"])  # the first fold's own score
    assert row["r2_geom_lo"] <= row["r2_geom"] <= row["r2_geom_hi"]


def test_composition_baselines_known_answer():
    """A target that is exactly linear in element fractions: fractions explain all of it, and rank is reported."""
    rng = np.random.default_rng(0)
    numbers = [rng.choice([3, 8, 9, 26], size=rng.integers(2, 9)) for _ in range(80)]
    frac_fe = np.array([(z == 26).mean() for z in numbers])
    targets = pd.DataFrame({"y": 2.0 + 3.0 * frac_fe}, index=pd.Index(np.arange(80)))
    data = Dataset.from_arrays(numbers, [np.zeros((len(z), 3)) for z in numbers], cells=[np.eye(3) * 4] * 80,
                               targets=targets)
    table = composition_baselines(data, ["y"]).set_index("basis")
    assert table.loc["fractions", "r2_comp"] == pytest.approx(1.0, abs=1e-9)
    assert table.loc["counts", "r2_comp"] < 0.99
    assert table.loc["fractions", "rank"] == 4  # fractions sum to the intercept


def test_element_coverage_counts_structures_not_atoms():
    data = Dataset.from_arrays([[8, 8, 26], [8, 3]], [np.zeros((3, 3)), np.zeros((2, 3))])
    cov = element_coverage(data).set_index("element")["structures"].to_dict()
    assert cov == {"O": 2, "Li": 1, "Fe": 1}


@needs_data
def test_subset_with_band_gap_only_has_every_target():
    data = crystal_subset(40, band_gap_only=True)
    assert len(data) == 40 and data.targets["band_gap"].notna().all()
    assert len(crystal_subset(None).ids) == 2000


def _fake_run(values: dict) -> CrystalRun:
    """A run whose ridge results are CPD fits on synthetic features with known signal strengths."""
    from cpd_core.decomposition import cpd

    rng = np.random.default_rng(1)
    n = 200
    C = np.column_stack([rng.integers(1, 5, n), np.ones(n)]).astype(float)
    geo = rng.normal(size=n)
    y = C[:, 0] + geo
    results, rows = {}, []
    for model, strength in values.items():
        H = np.column_stack([C[:, 0], strength * geo + rng.normal(size=n), rng.normal(size=(n, 3))])
        r = cpd(H, C, y)
        results[(model, 0, "band_gap", "ridge")] = r
        rows.append({**r.summary(), "model": model, "seed": 0, "status": "original", "target": "band_gap",
                     "probe": "ridge", "control": False})
    return CrystalRun(pd.DataFrame(rows), pd.DataFrame(), results, pd.DataFrame(), pd.DataFrame(), "mp", "counts", n)


def test_scorecard_row_is_the_paired_difference_with_the_best_invariant():
    run = _fake_run({"sevennet-0": 3.0, "chgnet-0.3.0": 0.3, "m3gnet-mp-2021": 1.0})
    (m,) = crystal_measurements(run)
    assert m.claim == "crystal_gradient" and not m.comparable
    assert "m3gnet-mp-2021" in m.what  # the better of the two invariant models
    assert m.value > 0 and m.lo > 0
    assert crystal_measurements(_fake_run({"chgnet-0.3.0": 1.0})) == []


@needs_data
def test_force_check_sees_restoring_forces_of_a_trained_potential(crystals):
    table = force_check(["m3gnet-mp-2021"], crystals, n=3)
    row = table.iloc[0]
    assert row["n"] == 3 and row["failed"] == 0
    assert row["median |F| (MP)"] < 0.3 and row["restoring"] > 0.3


@needs_data
def test_prediction_check_reports_errors_against_the_data(crystals):
    out = prediction_check("megnet-mp-bandgap", crystals.select(np.arange(10)), "band_gap", "PBE")
    assert out["n"] == int(crystals.targets["band_gap"].iloc[:10].notna().sum())
    assert np.isfinite(out["MAE"]) and out["MAE"] >= 0
