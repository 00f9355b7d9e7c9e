r"""The disentanglement gradient: CPD of every registered model on QM9, at its most informative block.

For each model (:mod:`cpd_core.models`) the pooled features of every block (layer × irrep ×
invariant, see :mod:`cpd_core.extract`) are probed with cross-validated ridge for each target;
the block with the highest ridge :math:`R^2_\text{geom}` is the model's *most informative
block* for that target, and only there are the nonlinear probes (MLP, GBT) run.

Choosing the best of :math:`B` blocks on the same folds that score it biases the chosen score
upwards (a winner's curse); with a few hundred held-out molecules per fold the ridge scores
of neighbouring blocks differ by more than that bias, and every block's score is returned
(:func:`block_scan`), so the choice can be checked.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cpd_core.composition import composition_matrix
from cpd_core.datasets.qm9 import QM9Subset, check_targets, load_qm9
from cpd_core.decomposition import cpd, cpd_table
from cpd_core.errors import InputError


def default_models() -> list[str]:
    """Registered models whose weights can be had offline and that carry no caveat, in registry order.

    The networks trained here on QM9 (:mod:`cpd_core.models.trained`) and their twins have a
    chapter of their own (:mod:`cpd_core.experiments.alignment`) and are left out.
    """
    from cpd_core.models import REGISTRY
    from cpd_core.models.trained import REGISTRY_CARDS as trained_here

    return [name for name, card in REGISTRY.items() if card.offline and not card.caveat and name not in trained_here]


def block_scan(qm9: QM9Subset, features: dict, targets: Sequence[str] = ("gap", "dipole"),
               cv: int = 5, seed: int = 0) -> pd.DataFrame:
    """Ridge CPD of every block for every target.

    Returns
    -------
    pandas.DataFrame
        One row per (block, target): ``r2_comp``, ``r2_full``, ``r2_geom`` (fold means),
        ``r2_geom_std`` and the block width ``d``.
    """
    check_targets(targets)
    C = composition_matrix(qm9.numbers)
    rows = []
    for block, H in features.items():
        for target in targets:
            res = cpd(H, C, qm9.targets[target].to_numpy(), probe="ridge", cv=cv, seed=seed)
            rows.append({"block": block, "target": target, "r2_comp": res.r2_comp, "r2_full": res.r2_full,
                         "r2_geom": res.r2_geom, "r2_geom_std": float(res.folds["r2_geom"].std()),
                         "d": H.shape[1]})
    return pd.DataFrame(rows)


def best_blocks(scan: pd.DataFrame) -> dict[str, str]:
    """Target → the block with the highest ridge R²_geom in ``scan``.

    Examples
    --------
    >>> scan = pd.DataFrame({"block": ["a", "b", "a", "b"], "target": ["gap", "gap", "mu", "mu"],
    ...                      "r2_geom": [0.1, 0.5, 0.7, 0.2]})
    >>> best_blocks(scan)
    {'gap': 'b', 'mu': 'a'}
    """
    idx = scan.groupby("target", sort=False)["r2_geom"].idxmax()
    return {t: scan.loc[i, "block"] for t, i in idx.items()}


def model_gradient(models: Sequence[str] | None = None, n: int | None = 1000, seed: int = 0,
                   targets: Sequence[str] = ("gap", "dipole"), probes: Sequence[str] = ("ridge", "mlp", "gbt"),
                   cv: int = 5, device: str = "auto", progress: bool = False, **extract_kwargs):
    """CPD of each model at its most informative block, on a seeded QM9 subset.

    Every model is probed on the same molecules: those whose elements all the models support
    (e.g. without fluorine when a model covers H, C, N, O only); the ids of the others are in
    ``summary.attrs["dropped"]``.

    Parameters
    ----------
    models : sequence of str, optional
        Registry names; default :func:`default_models`.
    n, seed : int
        QM9 subset (``n=None``: all 130,831 molecules); the seed also seeds the folds.
    targets, probes, cv, device, progress
        As elsewhere; ``extract_kwargs`` go to :func:`cpd_core.extract.extract_features`.

    Returns
    -------
    summary : pandas.DataFrame
        One row per (model, target, probe) at the chosen block, with the model's card
        (family, status, twin_of, domain), its parameter count and the block; ``n`` is the
        number of molecules probed.
    scan : pandas.DataFrame
        :func:`block_scan` of every model (column ``model`` added).
    """
    from tqdm import tqdm

    from cpd_core.extract import extract_features, kept_rows
    from cpd_core.models import REGISTRY, load

    models = default_models() if models is None else list(models)
    unknown = [m for m in models if m not in REGISTRY]
    if unknown:
        raise InputError(f"unknown model(s) {unknown}; known models: {sorted(REGISTRY)}")
    targets = check_targets(targets)
    qm9 = load_qm9(n=n, seed=seed)

    def features(featurizer, load_arrays):
        return extract_features(featurizer, "qm9", qm9.ids, qm9.numbers, qm9.positions, device=device,
                                progress=progress, skip_unsupported=True, load=load_arrays, **extract_kwargs)

    # pass 1: extract (or find cached) features; keep the molecules every model supports
    featurizers, common = {}, np.ones(len(qm9), dtype=bool)
    for name in tqdm(models, desc="extracting", disable=not progress):
        featurizers[name] = load(name, device=device)
        common &= kept_rows(features(featurizers[name], load_arrays=False))
    if not common.any():
        raise InputError(f"no molecule is supported by all of {models}")
    sub = qm9.select(common)
    C = composition_matrix(sub.numbers)
    ys = {t: sub.targets[t].to_numpy() for t in targets}

    # pass 2: one model's features in memory at a time
    summaries, scans = [], []
    for name in tqdm(models, desc="probing", disable=not progress):
        card, featurizer = REGISTRY[name], featurizers.pop(name)
        feats = features(featurizer, load_arrays=True)
        rows = common[feats.kept]  # of the rows this model kept, those every model kept
        feats = {block: H[rows] for block, H in feats.items()}
        scan = block_scan(sub, feats, targets=targets, cv=cv, seed=seed)
        scans.append(scan.assign(model=name))
        info = {"model": name, "family": card.family, "status": card.status, "twin_of": card.twin_of,
                "domain": card.domain, "parameters": featurizer.n_parameters}
        for target, block in best_blocks(scan).items():
            summary, _ = cpd_table(feats[block], C, {target: ys[target]}, probes=probes, cv=cv, seed=seed,
                                   progress=False)
            summaries.append(summary.assign(block=block, **info))
        del feats, featurizer
    summary = pd.concat(summaries, ignore_index=True)
    front = ["model", "family", "status", "twin_of", "domain", "parameters", "target", "block", "probe"]
    summary = summary[front + [c for c in summary.columns if c not in front]]
    summary.attrs["dropped"] = qm9.ids[~common].tolist()
    scan = pd.concat(scans, ignore_index=True)
    return summary, scan[["model"] + [c for c in scan.columns if c != "model"]]


def family_order(summary: pd.DataFrame, target: str = "gap", probe: str = "ridge") -> list[str]:
    """Families by the best R²_geom of their trained (not random-init) models, highest first."""
    trained = summary[(summary["status"] != "random-init") & (summary["target"] == target)
                      & (summary["probe"] == probe)]
    best = trained.groupby("family")["r2_geom"].max().sort_values(ascending=False)
    rest = [f for f in dict.fromkeys(summary["family"]) if f not in best.index]
    return list(best.index) + rest


def gradient_table(summary: pd.DataFrame, probe: str = "ridge") -> pd.DataFrame:
    """Wide table: one row per model (family order), R²_comp and R²_geom per target for one probe."""
    sub = summary[summary["probe"] == probe]
    wide = sub.pivot_table(index="model", columns="target", values=["r2_geom", "r2_comp"], sort=False)
    wide.columns = [f"{score} {target}" for score, target in wide.columns]
    info = sub.drop_duplicates("model").set_index("model")[["family", "status", "parameters"]]
    order = family_order(summary, probe=probe)
    table = info.join(wide)
    table["_f"] = table["family"].map({f: i for i, f in enumerate(order)})
    table["_t"] = (table["status"] == "random-init").astype(int)
    return table.sort_values(["_f", "_t"], kind="stable").drop(columns=["_f", "_t"])


def pick(summary: pd.DataFrame, model: str, target: str, probe: str, score: str = "r2_geom") -> float:
    """One number of a :func:`model_gradient` summary (for the book's prose)."""
    row = summary[(summary["model"] == model) & (summary["target"] == target) & (summary["probe"] == probe)]
    if len(row) != 1:
        raise KeyError(f"no single row for {model}/{target}/{probe}")
    return float(row[score].iloc[0])


def twin_gaps(summary: pd.DataFrame, probe: str = "ridge") -> pd.DataFrame:
    """R²_geom of each trained model minus that of its random-init twin, per target.

    A twin is matched through its card's ``twin_of``; trained models without a twin in
    ``summary`` are left out.
    """
    sub = summary[summary["probe"] == probe]
    twins = sub[sub["status"] == "random-init"].set_index(["twin_of", "target"])["r2_geom"]
    trained = sub[sub["status"] != "random-init"].set_index(["model", "target"])["r2_geom"]
    common = trained.index.intersection(twins.index)
    out = pd.DataFrame({"trained": trained.loc[common], "random-init": twins.loc[common]})
    out["learned"] = out["trained"] - out["random-init"]
    return out.reset_index().rename(columns={"level_0": "model", "level_1": "target"})


def invariant_comparison(scan: pd.DataFrame) -> pd.DataFrame:
    """For models with L ≥ 1 blocks: the best ridge R²_geom of each invariant, per target.

    Columns ``atom-norm`` and ``pooled-norm`` (best over that model's L ≥ 1 blocks made
    invariant that way) and ``L0`` (best over its invariant blocks), one row per (model, target).
    """
    kind = scan["block"].str.extract(r"@(atom-norm|pooled-norm)$")[0].fillna("L0")
    best = scan.assign(kind=kind).groupby(["model", "target", "kind"], sort=False)["r2_geom"].max()
    wide = best.unstack("kind")
    if "atom-norm" not in wide:
        return wide.iloc[0:0]
    return wide.dropna(subset=["atom-norm"])[["L0", "atom-norm", "pooled-norm"]].reset_index()


__all__ = ["invariant_comparison", "best_blocks", "block_scan", "default_models", "family_order", "gradient_table",
           "model_gradient", "pick", "twin_gaps"]
