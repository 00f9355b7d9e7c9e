"""Lazy featurizers: cached features are read without building the network, and a memo never lies."""

import json

import numpy as np
import pytest
import torch

from cpd_core import InputError
from cpd_core.cache import cache_dir
from cpd_core.datasets import Dataset
from cpd_core.extract import features
from cpd_core.models import REGISTRY
from cpd_core.models.base import Featurizer, ModelCard
from cpd_core.models import lazy
from cpd_core.models.lazy import StaleMemoError, load_lazy, model_fingerprint

BUILDS = []


class Net(Featurizer):
    """A one-layer network: per-atom features W · onehot(Z); ``scale`` changes its weights."""

    elements = (1, 6, 8)

    def __init__(self, scale=1.0, seed=0):
        BUILDS.append((scale, seed))
        self.seed = seed
        self.card = CARD
        torch.manual_seed(seed)
        self.module = torch.nn.Linear(9, 4, bias=False)
        with torch.no_grad():
            self.module.weight.mul_(scale)

    def features(self, batch):
        onehot = torch.nn.functional.one_hot(batch.numbers, 9).to(batch.positions.dtype)
        return {"h": self.module(onehot)}


CARD = ModelCard("lazy-toy", family="toy", status="original", training_data="none", source="test",
                 domain="molecules", build=lambda **kw: Net(**kw))


@pytest.fixture(autouse=True)
def toy(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CPD_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setitem(REGISTRY, "lazy-toy", CARD)
    monkeypatch.setattr(lazy, "_BUILT", {})  # networks built by earlier tests are not reused
    BUILDS.clear()


def test_a_network_is_built_once_per_process_and_request():
    a, b = load_lazy("lazy-toy", device="cpu", memo=False), load_lazy("lazy-toy", device="cpu", memo=False)
    assert a.module is b.module and len(BUILDS) == 1
    other = load_lazy("lazy-toy", device="cpu", memo=False, scale=2.0)
    assert other.module is not a.module and len(BUILDS) == 2


def molecules(name="toy-set"):
    rng = np.random.default_rng(0)
    numbers = [rng.choice([1, 6, 8], size=s) for s in (3, 5, 2, 4)]
    return Dataset.from_arrays(numbers, [rng.normal(size=(len(z), 3)) for z in numbers], name=name)


def test_the_memo_answers_without_a_build_once_a_build_wrote_it():
    first = load_lazy("lazy-toy", device="cpu")
    assert not first.built and BUILDS == []
    spec = first.spec()  # no memo yet: this builds
    assert first.built and len(BUILDS) == 1
    again = load_lazy("lazy-toy", device="cpu")
    assert (again.name, again.elements, again.n_parameters) == ("lazy-toy", (1, 6, 8), 36)
    assert again.spec() == json.loads(json.dumps(spec))
    assert not again.built and len(BUILDS) == 1


def test_cached_features_are_read_without_building_and_equal_the_computed_ones():
    data = molecules()
    computed = features(load_lazy("lazy-toy", device="cpu"), data, device="cpu", progress=False)
    assert len(BUILDS) == 1
    lazy = load_lazy("lazy-toy", device="cpu")
    read = features(lazy, data, device="cpu", progress=False)
    assert not lazy.built and len(BUILDS) == 1
    np.testing.assert_array_equal(read["h"], computed["h"])
    # a registry name goes the same way
    np.testing.assert_array_equal(features("lazy-toy", data, device="cpu", progress=False)["h"], computed["h"])
    assert len(BUILDS) == 1
    # structures not in the cache need the network: the one this process built is used again
    other = features(lazy, molecules("another-set"), device="cpu", progress=False)
    assert lazy.built and len(BUILDS) == 1 and other["h"].shape == computed["h"].shape


def test_build_options_and_weight_files_key_the_memo(tmp_path):
    assert model_fingerprint("lazy-toy", {"scale": 2.0}) != model_fingerprint("lazy-toy")
    before = model_fingerprint("lazy-toy")
    weights = tmp_path / "checkpoints" / "qm9" / "net" / "best.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    assert model_fingerprint("lazy-toy") != before
    # another build option is another network: its features are keyed apart
    data = molecules()
    plain = features(load_lazy("lazy-toy", device="cpu"), data, device="cpu", progress=False)["h"]
    scaled = features(load_lazy("lazy-toy", device="cpu", scale=2.0), data, device="cpu", progress=False)["h"]
    np.testing.assert_allclose(scaled, 2 * plain)


def test_a_memo_that_disagrees_with_the_network_is_refused_and_removed():
    load_lazy("lazy-toy", device="cpu").spec()
    [memo] = (cache_dir() / "specs").glob("*.json")
    stale = json.loads(memo.read_text())
    stale["spec"]["weights"] = "0" * 16
    memo.write_text(json.dumps(stale))
    lazy = load_lazy("lazy-toy", device="cpu")
    with pytest.raises(StaleMemoError, match="does not match the network built now"):
        features(lazy, molecules(), device="cpu", progress=False)
    assert not memo.exists()
    # the next run builds, writes a true memo and computes
    assert features(load_lazy("lazy-toy", device="cpu"), molecules(), device="cpu", progress=False)["h"].shape == (4, 4)


def test_an_unknown_model_fails_at_once():
    with pytest.raises(InputError, match="unknown model 'no-such-model'"):
        load_lazy("no-such-model")
