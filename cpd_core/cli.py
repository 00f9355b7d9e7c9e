"""Command line: ``cpd models``, ``cpd extract``, ``cpd probe``, ``cpd train``.

Examples::

    cpd models
    cpd extract --model ani2x --dataset qm9 --n 5000 --device cuda
    cpd extract --model sevennet-0 --n all --dtype float64
    cpd extract --model mace:/path/to/MACE-OFF23_medium.model --n 1000
    cpd probe --model ani2x-aev --n 5000 --target gap --probe ridge mlp gbt
    cpd extract --model so3net-ani1x --n all --target gap dipole --store qm9.zarr --scheduler local --workers 2
    cpd probe --store qm9.zarr --scheduler tcp://10.0.0.5:8786        # streaming ridge CPD on a cluster
    cpd train --arch painn --target gap --max-minutes 30 --device cuda
    cpd train --arch painn --target gap --max-minutes 30 --device cuda --resume   # 30 more minutes
"""

from __future__ import annotations

import argparse
import sys

from cpd_core.errors import InputError


def _n(value: str):
    return None if value.lower() in ("all", "none") else int(value)


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="registry name (see `cpd models`); not needed to probe a --store")
    p.add_argument("--dataset", default="qm9", choices=["qm9"])
    p.add_argument("--n", type=_n, default=2000, help="number of molecules, or 'all' (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and the CV folds")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--pooling", default="mean", choices=["mean", "sum"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--batch-size", type=int, default=None,
                   help="structures per forward pass (default: 16 on a CPU, 256 on a GPU)")
    p.add_argument("--shard-size", type=int, default=8192,
                   help="structures per cache shard; an interrupted run resumes from finished shards")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="leave out structures with elements the model does not cover (counted) "
                        "instead of stopping with an error")
    p.add_argument("--block", default=None, help="feature block to probe (default: the model's first)")


def _require_model(args) -> None:
    if args.model is None:
        raise InputError("--model is required (a registry name, see `cpd models`)")


def _features(args):
    """The data set and its features, as the one extraction call (:func:`cpd_core.extract.features`) gives them."""
    from cpd_core.datasets import load_qm9
    from cpd_core.extract import features
    from cpd_core.models import load

    _require_model(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    model = load(args.model, device=args.device)  # an unknown model fails before QM9 is read
    dataset = load_qm9(n=args.n, seed=args.seed)
    return dataset, features(model, dataset, pooling=args.pooling, device=args.device, progress=True,
                             dtype=args.dtype, batch_size=args.batch_size, shard_size=args.shard_size,
                             skip_unsupported=args.skip_unsupported)


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=None,
                   help="a Zarr feature store (a directory): extract writes the features there shard by shard; "
                        "probe runs streaming ridge CPD on it (cpd_core.distributed)")
    p.add_argument("--scheduler", default=None,
                   help="with --store: a Dask scheduler address (tcp://HOST:PORT), or 'local' for a LocalCluster "
                        "here; default: this process")
    p.add_argument("--workers", type=int, default=None, help="with --scheduler local: worker processes")


def _client(args):
    from cpd_core.distributed import client_for

    if args.scheduler is None:
        return None
    if args.store is None:
        raise InputError("--scheduler needs --store (features on workers go to a Zarr store)")
    return client_for(args.scheduler, n_workers=args.workers)


def _store_command(args) -> None:
    """``cpd extract --store`` / ``cpd probe --store``."""
    import pandas as pd

    from cpd_core.distributed import extract_to_zarr, probe_store

    client = _client(args)
    try:
        if args.command == "extract":
            _require_model(args)
            path = extract_to_zarr(args.model, args.store, n=args.n, seed=args.seed, targets=args.target,
                                   block=args.block, shard_rows=args.shard_size, client=client, device=args.device,
                                   dtype=args.dtype, pooling=args.pooling)
            print(f"features in {path}")
            return
        if args.probe != ["ridge"]:
            raise InputError("a store is probed by streaming ridge CPD only (--probe ridge)")
        results = probe_store(args.store, cv=args.cv, seed=args.seed, client=client, progress=client is None)
        rows = [{"target": name, "r2_comp": r.r2_comp, "r2_full": r.r2_full, "r2_geom": r.r2_geom,
                 "r2_geom_std": r.std["r2_geom"], "n": r.n_samples, "d": r.n_features} for name, r in results.items()]
        with pd.option_context("display.width", 200, "display.precision", 3):
            print(pd.DataFrame(rows).to_string(index=False))
    finally:
        if client is not None:
            client.close()


def _train_args(p: argparse.ArgumentParser) -> None:
    from cpd_core.models.trained import ARCHITECTURES, TRAINED_TARGETS

    p.add_argument("--arch", required=True, choices=list(ARCHITECTURES))
    p.add_argument("--target", required=True, choices=list(TRAINED_TARGETS))
    p.add_argument("--out", default=None,
                   help="folder for model.pt, manifest.json, snapshots/ and state.pt "
                        "(default: checkpoints/qm9/ARCH-TARGET, where the registry looks)")
    p.add_argument("--max-epochs", type=int, default=1000)
    p.add_argument("--max-minutes", type=float, default=60.0, help="wall-time budget of the training loop")
    p.add_argument("--patience", type=int, default=30, help="epochs without validation improvement before stopping")
    p.add_argument("--n-train", type=_n, default=None, help="first N molecules of the 110,000 train split")
    p.add_argument("--n-val", type=_n, default=None, help="first N molecules of the 10,000 validation split")
    p.add_argument("--n-test", type=_n, default=None, help="first N molecules of the 10,831 test split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per architecture)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--hparams", default="{}", help='network hyper-parameters as JSON, e.g. \'{"hidden": 64}\'')
    p.add_argument("--snapshots", type=int, default=4,
                   help="keep K snapshots of the averaged weights, after the steps that reach 1/K, 2/K, ... "
                        "of the budget (mid-epoch too), in OUT/snapshots/ (0: none; default 4)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder (its state.pt) for a new --max-epochs/--max-minutes "
                        "budget, with a warm restart of the schedule; the other options must be those of the run")


def _train(args) -> None:
    import json

    import torch

    from cpd_core.training import TrainConfig, train

    try:
        hparams = json.loads(args.hparams)
    except json.JSONDecodeError as err:
        raise InputError(f"--hparams is not JSON: {err}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(arch=args.arch, target=args.target, max_epochs=args.max_epochs,
                         max_minutes=args.max_minutes, patience=args.patience, batch_size=args.batch_size,
                         lr=args.lr, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed,
                         split_seed=args.split_seed, device=args.device, snapshots=args.snapshots, hparams=hparams)
    manifest = train(config, out_dir=args.out, log=lambda line: print(line, flush=True), resume=args.resume)
    result = manifest["result"]
    print(f"test MAE {result['test_mae_meV']:.2f} meV after {result['epochs']} epochs "
          f"({result['train_minutes']:.1f} min, stopped by {result['stopped_by']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cpd", description="Composition Projection Decomposition")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the model registry")
    ext = sub.add_parser("extract", help="extract and cache pooled features (or write them to a Zarr store)")
    _dataset_args(ext)
    _cluster_args(ext)
    ext.add_argument("--target", nargs="+", default=["gap"], help="with --store: QM9 targets stored beside the features")
    prb = sub.add_parser("probe", help="extract (or load cached) features and run CPD (or probe a Zarr store)")
    _dataset_args(prb)
    _cluster_args(prb)
    prb.add_argument("--target", nargs="+", default=["gap"], help="QM9 target names")
    prb.add_argument("--probe", nargs="+", default=["ridge"], choices=["ridge", "mlp", "gbt"])
    prb.add_argument("--cv", type=int, default=5)
    prb.add_argument("--fit-projection", default="train", choices=["train", "all"])
    trn = sub.add_parser("train", help="train a network on QM9 (checkpoint + manifest for the registry)")
    _train_args(trn)
    args = parser.parse_args(argv)

    try:
        if args.command == "models":
            import pandas as pd

            from cpd_core.models import model_table

            table = model_table()
            table["training data"] = table["training data"].map(lambda s: s if len(s) <= 36 else s[:35] + "…")
            table["caveat"] = table["caveat"].map(lambda s: "yes" if s else "")
            table["QM9 overlap"] = table["QM9 overlap"].map(lambda s: "yes" if s else "")
            table = table[["model", "status", "family", "domain", "offline", "caveat", "QM9 overlap",
                           "training data", "stands in for", "twin of"]]
            with pd.option_context("display.width", 250, "display.max_rows", None):
                print(table.to_string(index=False))
            print("\nmace:PATH and matgl:PATH load a local checkpoint; caveats and QM9 overlaps: "
                  "python -c 'from cpd_core.models import model_table; "
                  "print(model_table()[[\"model\", \"caveat\", \"QM9 overlap\"]])'")
        elif args.command == "train":
            _train(args)
        elif args.store is not None or args.scheduler is not None:
            _store_command(args)
        elif args.command == "extract":
            qm9, feats = _features(args)
            for block, H in feats.items():
                print(f"{block}: {H.shape[0]} structures x {H.shape[1]} features")
            if feats.skipped:
                print(f"skipped {len(feats.skipped)} structure(s) with unsupported elements")
        else:
            import pandas as pd

            from cpd_core.datasets.qm9 import check_targets
            from cpd_core.experiments.ani2x_aev import representation_cpd

            check_targets(args.target)
            qm9, feats = _features(args)
            if feats.skipped:
                qm9 = qm9.select(feats.kept)
            block = args.block or next(iter(feats))
            if block not in feats:
                raise InputError(f"unknown block {block!r}; {args.model} has {list(feats)}")
            summary, _ = representation_cpd(qm9, feats[block], targets=args.target, probes=args.probe,
                                            control=False, cv=args.cv, seed=args.seed,
                                            fit_projection=args.fit_projection, progress=True)
            with pd.option_context("display.width", 200, "display.precision", 3):
                print(summary.to_string(index=False))
    except InputError as err:
        print(f"cpd: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
