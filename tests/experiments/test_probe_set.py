"""The one path from a QM9 subset to each model's blocks, shared by the model chapters."""

import numpy as np
import pytest

from cpd_core.errors import InputError
from cpd_core.experiments.probe_set import probe_set


pytestmark = pytest.mark.usefixtures("tmp_cache")  # fixtures: tests/experiments/conftest.py


def test_probe_set_blocks_runs_and_sum_pooling(qm9_loaded):
    ps = probe_set(["ani2x-aev", "ani2x-random"], n=40, seed=3)
    assert ps.dropped == [] and len(ps.data) == 40 and ps.C.shape[0] == 40 and (ps.C[:, -1] == 1).all()
    assert ps.runs((0, 2)) == [("ani2x-aev", 0), ("ani2x-random", 0), ("ani2x-random", 2)]
    mean = ps.blocks("ani2x-aev", device="cpu")
    total = ps.blocks("ani2x-aev", device="cpu", pooling="sum")
    atoms = np.array([len(z) for z in ps.data.numbers], dtype=float)
    np.testing.assert_allclose(total["aev"], mean["aev"] * atoms[:, None], rtol=1e-6)
    assert set(ps.targets(["gap"])) == {"gap"} and len(ps.targets(["gap"])["gap"]) == 40
    with pytest.raises(InputError, match="not one of this probe set"):
        ps.blocks("so3lr")
    with pytest.raises(InputError, match="pooling"):
        ps.blocks("ani2x-aev", pooling="max")
    with pytest.raises(InputError, match="unknown model"):
        probe_set(["nope"], n=5)
    with pytest.raises(InputError, match="no models"):
        probe_set([], n=5)
