"""Known-answer experiments of the Method chapter, at a small size."""

import numpy as np
import pytest

from cpd_core.experiments.known_answer import compositional_inflation, planted_recovery



def test_planted_recovery_table():
    summary, folds = planted_recovery(geom_shares=(0.0, 0.5), comp_share=0.3, n=2000, probes=("ridge",))
    assert list(summary["geom_share"]) == [0.0, 0.5]
    assert {"r2_geom_true", "r2_comp_true", "r2_geom", "probe"} <= set(summary.columns)
    np.testing.assert_allclose(summary["r2_geom"], summary["r2_geom_true"], atol=0.03)
    assert len(folds) == 2 * 5  # shares x default 5 folds
    assert set(folds.columns) == {"fold", "r2_geom", "geom_share", "r2_geom_true", "probe"}


def test_compositional_inflation_table():
    summary, folds = compositional_inflation(n=400, probes=("ridge",))
    assert list(summary["probe"]) == ["ridge"]
    assert abs(summary.loc[0, "r2_geom"]) < 0.02
    assert summary.loc[0, "r2_comp"] == pytest.approx(1.0, abs=1e-9)
    assert len(folds) == 5
