r"""Choosing a model's most informative block without a winner's curse (nested cross-validation).

A model offers many blocks (layer × irrep × invariant). Picking the block with the highest
:math:`R^2_\text{geom}` and reporting that same number biases it upwards: the maximum of :math:`B`
noisy estimates exceeds the best block's true score. Here the choice is part of the procedure:

for each outer fold :math:`f` (the shuffled, seeded K folds of :func:`cpd_core.cpd`),

1. every block is scored on **inner folds of the training rows only** — the other :math:`K-1`
   folds, each held out in turn from a fit of the whole probe on the remaining :math:`K-2`
   (projection, clipped scaler and ridge penalty all fit on those rows);
2. the block with the highest inner mean :math:`R^2_\text{geom}` is chosen;
3. it is refit on all training rows of :math:`f` and scored on :math:`f`.

The nested score is the mean of step 3 over outer folds; fold :math:`f`'s molecules never informed
its choice. The naive maximum over blocks of the outer scores is kept beside it, labelled, so the
size of the bias can be seen. Ridge runs in closed form (:mod:`cpd_core.ridge`), so the
:math:`K + K(K-1)` fits per block cost little more than one.

Why not score blocks with the inner folds that choose the penalty (:mod:`cpd_core.ridge`,
``select="folds"``), which would save most of the fits? Those inner fits keep the outer training
rows' standardisation, so their held-out rows are never outside the training range and never
clipped. A block whose near-collinear columns cancel on the training rows but not on clipped
held-out rows then scores well inside and collapses outside: tried on SO3LR's random twins, the
nested R²_geom of the gap fell to −8,400 on one seed. Refitting the whole probe per inner fold
sees it.
"""

from __future__ import annotations

import functools
import hashlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cpd_core.cache import cache_dir, content_key, save_npz_atomic
from cpd_core.errors import InputError
from cpd_core.ridge import RidgeFolds, as_alpha_grid


@dataclass
class BlockChoice:
    """The nested choice of a block, and what it scores.

    Attributes
    ----------
    result : cpd_core.CPDResult
        Nested ridge CPD: per outer fold, the chosen block's ``r2_full``, ``r2_comp`` and
        ``r2_geom``; intervals and :func:`~cpd_core.compare` work on it as on any result
        (its ``probe`` is ``"ridge (nested block)"``).
    choices : pandas.DataFrame
        One row per outer fold: ``block`` chosen, its ``inner_r2_geom`` and ``outer_r2_geom``.
    scan : pandas.DataFrame
        Every block: outer-fold mean ``r2_geom``, ``r2_full`` and width ``d`` (the naive view).
    naive_block : str
        The block with the highest outer mean ``r2_geom`` (the winner's-curse choice).
    naive_r2_geom : float
        Its score: biased upwards, shown only beside the nested one.
    """

    result: object
    choices: pd.DataFrame
    scan: pd.DataFrame
    naive_block: str
    naive_r2_geom: float
    blocks: dict = field(repr=False, default_factory=dict)
    C: np.ndarray = field(repr=False, default=None)

    @property
    def r2_geom(self) -> float:
        """Nested R²_geom (mean over outer folds of the block chosen on inner folds)."""
        return self.result.r2_geom

    @property
    def counts(self) -> pd.Series:
        """How often each block was chosen over the outer folds."""
        return self.choices["block"].value_counts()

    @property
    def block(self) -> str:
        """The block chosen most often (ties: the one with the higher naive score)."""
        counts = self.counts
        top = counts[counts == counts.max()].index
        return max(top, key=lambda b: self.scan.loc[b, "r2_geom"])

    def probe(self, probe, seed: int | None = None, standardize: bool = True, full: bool = True):
        """Another probe (``"mlp"``, ``"gbt"``, a regressor) on each outer fold's chosen block.

        The block of outer fold :math:`f` was chosen on ridge inner folds of its training rows, so
        this stays nested. Returns a :class:`~cpd_core.CPDResult` on the same folds. With
        ``full=False`` the probe is fit on the geometric residual only (half the cost): its
        ``r2_full`` is NaN. :meth:`pending` defers the folds, to run those of several probes
        together (:func:`cpd_core.decomposition.run_pending`).
        """
        from cpd_core.decomposition import run_pending

        return run_pending([self.pending(probe, seed=seed, standardize=standardize, full=full)])[0]

    def pending(self, probe, seed: int | None = None, standardize: bool = True, full: bool = True):
        """:meth:`probe` with its folds not yet run: a :class:`~cpd_core.decomposition.Pending`."""
        from cpd_core.decomposition import Pending, _assemble, collect_folds

        res = self.result
        seed = res.seed if seed is None else seed
        chosen = list(self.choices["block"].items())
        calls = [(self.blocks[block], self.C, res.y, res.fold_of != fold, res.fold_of == fold, probe, seed, standardize,
                  True, None, full) for fold, block in chosen]
        name = probe if isinstance(probe, str) else type(probe).__name__

        def finish(outputs):
            rows, oof = collect_folds(outputs, [fold for fold, _ in chosen], res.fold_of, res.n_samples)
            return _assemble(rows, oof, res.y, self.C, res.fold_of, res.cv, seed, f"{name} (nested block)", "train",
                             res.n_features, res.level, res.n_boot)

        return Pending(calls, finish)


@dataclass
class BlockScan:
    """Every block of a model scored on the outer and inner folds, for one or more targets.

    What :func:`best_block` chooses from, kept so that choices among any subset of the blocks
    (:meth:`choose` with ``among``: for example only the scalar blocks) cost no further fit.

    Attributes
    ----------
    names : list of str
        The blocks, in the order given.
    inner : dict of str to numpy.ndarray, shape (K, n_blocks)
        Target → inner mean R²_geom per (outer fold, block).
    outer : dict of str to dict
        Target → block → (per outer fold ``[r2_geom, r2_full, alpha_geom, alpha_full]``, held-out
        geometric predictions, held-out full predictions).
    """

    names: list
    arrays: dict = field(repr=False)
    C: np.ndarray = field(repr=False)
    ys: dict = field(repr=False)
    fold_of: np.ndarray = field(repr=False)
    cv: int
    seed: int
    level: float
    n_boot: int
    inner: dict = field(repr=False)
    outer: dict = field(repr=False)

    def choose(self, target=None, among=None) -> BlockChoice:
        """The nested choice for ``target`` (the only one if ``None``) among the blocks ``among`` (default all)."""
        from cpd_core.decomposition import _assemble

        if target is None:
            if len(self.ys) != 1:
                raise InputError(f"name the target: this scan has {list(self.ys)}")
            target = next(iter(self.ys))
        if target not in self.ys:
            raise InputError(f"target {target!r} was not scanned; scanned: {list(self.ys)}")
        names = self.names if among is None else [n for n in self.names if n in set(among)]
        if not names:
            raise InputError(f"none of the blocks {sorted(among)} was scanned")
        cols = [self.names.index(n) for n in names]
        inner, outer, y, K = self.inner[target][:, cols], self.outer[target], self.ys[target], self.cv
        chosen = [names[int(np.argmax(inner[f]))] for f in range(K)]
        rows, choices = [], []
        oof = {"full": np.empty(len(y)), "geom": np.empty(len(y))}
        for f, name in enumerate(chosen):
            scores, g_oof, f_oof = outer[name]
            te = self.fold_of == f
            oof["geom"][te], oof["full"][te] = g_oof[te], f_oof[te]
            rows.append({"fold": f, "r2_full": scores[f, 1], "r2_geom": scores[f, 0],
                         "alpha_full": scores[f, 3], "alpha_geom": scores[f, 2]})
            choices.append({"fold": f, "block": name, "inner_r2_geom": inner[f, names.index(name)],
                            "outer_r2_geom": scores[f, 0]})
        width = max(self.arrays[n].shape[1] for n in set(chosen))
        result = _assemble(rows, oof, y, self.C, self.fold_of, K, self.seed, "ridge (nested block)", "train", width,
                           self.level, self.n_boot)
        scan = pd.DataFrame({"r2_geom": [outer[n][0][:, 0].mean() for n in names],
                             "r2_full": [outer[n][0][:, 1].mean() for n in names],
                             "d": [self.arrays[n].shape[1] for n in names]}, index=pd.Index(names, name="block"))
        naive = scan["r2_geom"].idxmax()
        return BlockChoice(result, pd.DataFrame(choices).set_index("fold"), scan, naive,
                           float(scan.loc[naive, "r2_geom"]), {n: self.arrays[n] for n in names}, self.C)


def scan_blocks(blocks: Mapping[str, np.ndarray], C, ys: Mapping[str, np.ndarray], cv: int = 5, seed: int = 0,
                alphas=None, select: str = "folds", standardize: bool = True, level: float = 0.95,
                n_boot: int = 1000, cache: bool = False) -> BlockScan:
    """Score every block on the outer and inner folds for every target (see the module docstring).

    The targets share each block's per-fold statistics and eigendecompositions
    (:meth:`cpd_core.ridge.RidgeFolds.retarget`), so scanning several targets costs little more
    than one. :meth:`BlockScan.choose` makes the nested choice.

    Parameters
    ----------
    blocks : mapping of str to array_like, shape (n, d_b)
        Block name → pooled features, all on the same n structures.
    C : array_like, shape (n, k)
        Composition matrix.
    ys : mapping of str to array_like, shape (n,)
        Target name → target.
    cv, seed, alphas, select, standardize, level, n_boot
        As in :func:`cpd_core.cpd` (the same folds).
    cache : bool
        Keep each block's scan of each target in the cache (``<cache>/scans/``) and read it from
        there when the same block, composition, target, folds and settings come again, under the
        same code (:func:`scan_keys`): chapters that probe the same features (the models chapter,
        layer profiles, routing) then scan each block once. Off by default.

    Returns
    -------
    BlockScan

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> C = np.column_stack([rng.integers(0, 5, 300), np.ones(300)])
    >>> y = rng.normal(size=300)
    >>> blocks = {f"noise{i}": rng.normal(size=(300, 20)) for i in range(4)}
    >>> blocks["signal"] = np.column_stack([y + 0.3 * rng.normal(size=300), rng.normal(size=(300, 5))])
    >>> scan = scan_blocks(blocks, C, {"y": y, "noise": rng.normal(size=300)}, cv=4)
    >>> scan.choose("y").block, scan.choose("y", among=["noise0", "noise1"]).block in ("noise0", "noise1")
    ('signal', True)
    """
    from cpd_core.decomposition import _check_inputs, fold_labels

    if not blocks:
        raise InputError("blocks is empty")
    if not ys:
        raise InputError("ys is empty: give at least one target")
    names = list(blocks)
    grid = as_alpha_grid(alphas)
    arrays, checked = {}, {}
    first = next(iter(ys))
    for name in names:
        H, C_checked, y_checked = _check_inputs(blocks[name], C, ys[first], cv)
        arrays[name] = H
    C = C_checked
    for t, y in ys.items():
        checked[t] = _check_inputs(arrays[names[0]], C, y, cv)[2]
    K = int(cv)
    fold_of = fold_labels(len(checked[first]), K, seed)

    inner = {t: np.zeros((K, len(names))) for t in checked}   # inner mean R²_geom per (outer fold, block)
    outer = {t: {} for t in checked}                           # block -> per outer fold scores, OOF preds
    calls = [(arrays[name], C, checked, fold_of, grid, select, standardize) for name in names]
    for b, (name, scanned) in enumerate(zip(names, _run_blocks(calls, cache=cache))):
        for t, (inner_f, outer_t) in scanned.items():
            inner[t][:, b] = inner_f
            outer[t][name] = outer_t
    return BlockScan(names, arrays, C, checked, fold_of, K, seed, level, n_boot, inner, outer)


#: Below this many feature values in all blocks together, blocks are scanned in this process.
PARALLEL_MIN_VALUES = 500_000


def _run_blocks(calls: list[tuple], cache: bool = False) -> list:
    """:func:`_scan_block` of each block, on :func:`cpd_core.decomposition.fold_jobs` processes when the
    blocks are large enough to pay for them (the result does not depend on it: each block is computed
    alone and deterministically). With ``cache``, (block, target) scans already in the cache are read,
    and only the missing targets of each block are computed (and stored)."""
    from cpd_core.decomposition import fold_jobs

    found = [{} for _ in calls]
    keys = [scan_keys(*call) if cache else {} for call in calls]
    todo = []
    for i, call in enumerate(calls):
        for t, key in keys[i].items():
            hit = _read_scan(key)
            if hit is not None:
                found[i][t] = hit
        missing = {t: y for t, y in call[2].items() if t not in found[i]}
        if missing:
            todo.append((i, (call[0], call[1], missing, *call[3:])))
    jobs = min(fold_jobs(), len(todo))
    if jobs <= 1 or sum(call[0].size for _, call in todo) < PARALLEL_MIN_VALUES:
        computed = [_scan_block(*call) for _, call in todo]
    else:
        import warnings

        from joblib import Parallel, delayed

        # as in cpd_core.decomposition.run_folds: loky's note that it replaced a worker is no error
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given", category=UserWarning)
        computed = Parallel(n_jobs=jobs, backend="loky")(delayed(_scan_block)(*call) for _, call in todo)
    for (i, _), out in zip(todo, computed):
        for t, value in out.items():
            found[i][t] = value
            if cache:
                _write_scan(keys[i][t], value)
    return [{t: result[t] for t in call[2]} for result, call in zip(found, calls)]


#: The modules a block scan's numbers depend on (what :func:`_scan_block` computes with, directly or not):
#: an edit to any other module of ``cpd_core`` (a chapter, the scorecard, a loader) keeps the cached scans.
SCAN_MODULES = ("selection.py", "ridge.py", "decomposition.py", "projection.py", "probes.py", "intervals.py",
                "cache.py", "errors.py")


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """Hash of the modules a scan depends on (:data:`SCAN_MODULES`) and of numpy's and scipy's versions,
    read once per process (the code a process runs is the code it imported)."""
    import scipy

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    for name in SCAN_MODULES:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


def scan_keys(H, C, ys, fold_of, grid, select, standardize) -> dict:
    """Cache key of each target's scan of one block: the block, composition, target and folds (by their
    bytes), the penalty grid, the selection rule, standardisation, and the code (:func:`_code_version`)."""
    block = content_key(scan="block/1", H=H, C=C, folds=fold_of, grid=np.asarray(grid), select=select,
                        standardize=bool(standardize), code=_code_version())  # the arrays hashed once
    return {t: content_key(block=block, y=y) for t, y in ys.items()}


def _scan_path(key: str) -> Path:
    return cache_dir() / "scans" / f"{key}.npz"


def _read_scan(key: str):
    path = _scan_path(key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as d:
            return d["inner"], (d["scores"], d["geom"], d["full"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)
        return None


def _write_scan(key: str, value) -> None:
    inner, (scores, geom, full) = value
    save_npz_atomic(_scan_path(key), inner=inner, scores=scores, geom=geom, full=full)


def _scan_block(H, C, ys, fold_of, grid, select, standardize) -> dict:
    """One block, every target: inner mean R²_geom per outer fold, and the outer folds' scores and predictions.

    The targets share the block's per-fold statistics and eigendecompositions (:meth:`RidgeFolds.retarget`).
    """
    K = int(fold_of.max()) + 1
    first = next(iter(ys))
    base = RidgeFolds(H, C, ys[first], fold_of, standardize=standardize)
    out = {}
    for t, y in ys.items():
        rf = base if t == first else base.retarget(y)
        g_oof, f_oof = np.empty(len(y)), np.empty(len(y))
        scores, inner = [], np.zeros(K)
        for f in range(K):
            train = [g for g in range(K) if g != f]
            # each inner fit is the whole probe (projection, clipped scaler, penalty) refit on the
            # other inner folds: a block whose clipped held-out rows break its fit shows it here
            inner[f] = np.mean([_score(rf.fit([h for h in train if h != g], g, grid, True, select)) for g in train])
            geo = rf.fit(train, f, grid, geom=True, select=select)
            full = rf.fit(train, f, grid, geom=False, select=select)
            g_oof[rf.rows[f]], f_oof[rf.rows[f]] = geo.predictions, full.predictions
            scores.append((_score(geo), _score(full), grid[geo.chosen], grid[full.chosen]))
        out[t] = (inner, (np.array(scores), g_oof, f_oof))
    return out


def best_block(blocks: Mapping[str, np.ndarray], C, y, probe: str = "ridge", cv: int = 5, seed: int = 0,
               alphas=None, select: str = "folds", standardize: bool = True, level: float = 0.95,
               n_boot: int = 1000, cache: bool = False) -> BlockChoice:
    """Nested choice of the most informative block for one target (see the module docstring).

    Parameters
    ----------
    blocks : mapping of str to array_like, shape (n, d_b)
        Block name → pooled features, all on the same n structures.
    C : array_like, shape (n, k)
        Composition matrix.
    y : array_like, shape (n,)
        Target.
    probe : {"ridge"}
        The selection probe (closed-form ridge). Other probes on the chosen blocks:
        :meth:`BlockChoice.probe`.
    cv, seed, alphas, select, standardize, level, n_boot
        As in :func:`cpd_core.cpd` (the same folds).
    cache : bool
        As in :func:`scan_blocks`.

    Returns
    -------
    BlockChoice

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> C = np.column_stack([rng.integers(0, 5, 300), np.ones(300)])
    >>> y = rng.normal(size=300)
    >>> blocks = {f"noise{i}": rng.normal(size=(300, 20)) for i in range(6)}
    >>> blocks["signal"] = np.column_stack([y + 0.3 * rng.normal(size=300), rng.normal(size=(300, 5))])
    >>> choice = best_block(blocks, C, y, cv=4)
    >>> choice.block, bool(choice.r2_geom > 0.8)
    ('signal', True)
    """
    if probe != "ridge":
        raise InputError(f"best_block selects with the closed-form ridge probe; got {probe!r} "
                         "(run other probes on the chosen blocks with BlockChoice.probe)")
    return scan_blocks(blocks, C, {"y": y}, cv=cv, seed=seed, alphas=alphas, select=select, standardize=standardize,
                       level=level, n_boot=n_boot, cache=cache).choose("y")


def _score(fit) -> float:
    return float(fit.r2[fit.chosen])


__all__ = ["BlockChoice", "BlockScan", "best_block", "scan_blocks", "scan_keys"]
