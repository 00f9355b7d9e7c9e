"""The command line: `cpd models`, `cpd extract`, `cpd probe`."""

import pytest

from cpd_core import cli, extract
from cpd_core.cli import main
from cpd_core.datasets import qm9 as qm9_module


@pytest.fixture(scope="module")
def qm9_arrays():
    """The parsed QM9 arrays, from the real cache (like the QM9 loader tests)."""
    if qm9_module.importlib.util.find_spec("qm9pack") is None:
        pytest.skip("QM9 needs the PyPI package qm9pack")
    return qm9_module._all_arrays()


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CPD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def qm9_loaded(qm9_arrays, monkeypatch):
    """QM9 served from memory: the temporary cache then only receives the features."""
    monkeypatch.setattr(qm9_module, "_all_arrays", lambda: qm9_arrays)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if anything loads QM9 or extracts features."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(qm9_module, "_all_arrays", forbidden)
    monkeypatch.setattr(extract, "run_batches", forbidden)


@pytest.fixture
def count_extractions(monkeypatch):
    calls = []
    real = extract.run_batches

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(extract, "run_batches", counting)
    return calls


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.split("\n\n")[0].splitlines()
    assert lines[0].split()[:4] == ["model", "status", "family", "domain"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    from cpd_core.models import REGISTRY

    assert set(rows) == set(REGISTRY)
    assert rows["ani2x"][1:3] == ["original", "ANI"]
    assert rows["ani2x-random"][1] == "random-init"
    assert "mace:PATH" in out


def test_unknown_model_returns_2_with_error_on_stderr(capsys, no_work):
    assert main(["probe", "--model", "nope", "--n", "60", "--cv", "3"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cpd: error: unknown model 'nope'")
    assert "ani2x-aev" in captured.err


def test_extract_unknown_model_returns_2(capsys, no_work):
    assert main(["extract", "--model", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_unknown_target_returns_2_before_any_extraction(capsys, no_work):
    code = main(["probe", "--model", "ani2x-aev", "--n", "60", "--target", "gap", "bandgap"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cpd: error: unknown QM9 target(s) ['bandgap']" in err
    assert "'homo'" in err


@pytest.mark.parametrize("argv", [
    [],
    ["probe", "--model", "ani2x-aev", "--probe", "svm"],
    ["probe", "--model", "ani2x-aev", "--fit-projection", "test"],
    ["extract", "--model", "ani2x-aev", "--pooling", "max"],
    ["extract", "--model", "ani2x-aev", "--n", "many"],
    ["frobnicate"],
])
def test_bad_arguments_exit_2(argv, capsys, no_work):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: cpd" in capsys.readouterr().err


def test_model_is_required_without_a_store(capsys, no_work):
    assert main(["probe"]) == 2
    assert "--model is required" in capsys.readouterr().err


@pytest.mark.parametrize("text, value", [("all", None), ("None", None), ("ALL", None), ("60", 60)])
def test_n_argument(text, value):
    assert cli._n(text) == value


def test_cuda_device_without_cuda_returns_2(capsys, qm9_loaded):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["extract", "--model", "ani2x-aev", "--n", "5", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_small_probe_run_prints_a_table(capsys, qm9_loaded, tmp_cache, count_extractions):
    code = main(["probe", "--model", "ani2x-aev", "--n", "60", "--cv", "3", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2  # header + one (target, probe) row
    header, row = lines[0].split(), lines[1].split()
    for col in ("target", "probe", "r2_comp", "r2_full", "r2_geom", "n", "d", "rank_C"):
        assert col in header
    record = dict(zip(header, row))
    assert record["target"] == "gap" and record["probe"] == "ridge"
    assert (record["n"], record["d"]) == ("60", "1008")
    assert -1.0 < float(record["r2_full"]) <= 1.0
    # the features were extracted once and cached in the temporary cache directory
    assert count_extractions == [60]
    assert len(list((tmp_cache / "features").rglob("*.npz"))) == 1

    # a second run with the same molecules reuses them; another probe and target are fine
    code = main(["probe", "--model", "ani2x-aev", "--n", "60", "--cv", "3", "--device", "cpu",
                 "--target", "gap", "dipole", "--block", "aev/radial"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert count_extractions == [60]
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3
    assert [line.split()[0] for line in lines[1:]] == ["gap", "dipole"]
    assert "112" in lines[1].split()  # the radial block's width


def test_fit_projection_option_is_used(capsys, qm9_loaded):
    code = main(["probe", "--model", "ani2x-aev", "--n", "30", "--cv", "3", "--device", "cpu",
                 "--fit-projection", "all"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    record = dict(zip(out[0].split(), out[1].split()))
    assert record["fit_projection"] == "all"


def test_unknown_block_returns_2(capsys, qm9_loaded):
    code = main(["probe", "--model", "ani2x-aev", "--n", "12", "--cv", "3", "--device", "cpu",
                 "--block", "nope"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown block 'nope'" in err and "'aev'" in err


def test_extract_prints_block_shapes(capsys, qm9_loaded, tmp_cache):
    assert main(["extract", "--model", "ani2x-aev", "--n", "10", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["aev: 10 structures x 1008 features",
                   "aev/radial: 10 structures x 112 features",
                   "aev/angular: 10 structures x 896 features"]
    assert len(list((tmp_cache / "features").rglob("*.npz"))) == 1


def test_extract_resumes_and_accepts_dtype_and_shards(capsys, qm9_loaded, tmp_cache, count_extractions):
    argv = ["extract", "--model", "ani2x-aev", "--n", "12", "--device", "cpu", "--dtype", "float64",
            "--shard-size", "5", "--batch-size", "3"]
    assert main(argv) == 0
    assert len(list((tmp_cache / "features").rglob("*.npz"))) == 3
    assert sum(count_extractions) == 12
    assert main(argv) == 0
    assert sum(count_extractions) == 12  # everything came from the shards


def test_bad_batch_size_returns_2(capsys, no_work):
    assert main(["extract", "--model", "ani2x-aev", "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err
