r"""One training protocol for every architecture: ``cpd train --arch ARCH --target {gap,U0}``.

The rules, the same for every network (only the peak learning rate is per architecture, the
value its authors used or, where that diverged in short runs, the nearest that did not):

* **data**: the seeded split of :mod:`cpd_core.training.data` (110,000 / 10,000 / 10,831);
  ``n_train``/``n_val``/``n_test`` take the first molecules of their parts for a smaller run;
* **loss**: mean absolute error of the standardised target, :math:`|\hat y - y| / \sigma`;
* **optimiser**: Adam, gradient norm clipped at 10, batches of 32 molecules drawn without
  replacement each epoch (seeded);
* **schedule**: linear warm-up over the first 2 % of the budget, then cosine decay to 1 % of
  the peak; the budget is ``max_epochs`` or ``max_minutes`` of wall time, *whichever ends
  first*, and the schedule follows whichever is further along;
* **weights kept**: an exponential moving average of the weights (decay 0.999, warmed up as
  :math:`\min(0.999, (1 + t)/(10 + t))`) is validated after every epoch; the best on validation
  MAE is kept, and training stops early after ``patience`` epochs without improvement;
* **outputs**: ``model.pt`` (the kept weights in float32, the architecture and the target
  normalisation; loadable with ``torch.load(weights_only=True)``) and ``manifest.json``
  (everything needed to judge and repeat the run, the test MAE included).
"""

from __future__ import annotations

import copy
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from cpd_core.errors import InputError
from cpd_core.models.base import resolve_device
from cpd_core.models.trained import (
    ARCHITECTURES,
    CHECKPOINT_FORMAT,
    TRAINED_TARGETS,
    build_network,
    checkpoint_dir,
)
from cpd_core.training.data import MAX_Z, SPLIT_SIZES, Normalisation, QM9Tensors, split_indices

#: Peak learning rate per architecture.
LEARNING_RATES = {"schnet": 5e-4, "dimenet++": 1e-3, "painn": 5e-4, "visnet": 5e-4, "mace": 5e-3}


@dataclass
class TrainConfig:
    """Settings of one run (see the module docstring for what each rule does)."""

    arch: str
    target: str
    max_epochs: int = 1000
    max_minutes: float = 60.0
    patience: int = 30
    batch_size: int = 32
    lr: float | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    seed: int = 0
    split_seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 256
    ema_decay: float = 0.999
    grad_clip: float = 10.0
    warmup: float = 0.02
    final_lr: float = 0.01
    hparams: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {self.arch!r}; known: {list(ARCHITECTURES)}")
        if self.target not in TRAINED_TARGETS:
            raise InputError(f"target must be one of {list(TRAINED_TARGETS)}, got {self.target!r}")
        for name in ("max_epochs", "batch_size", "eval_batch_size", "patience"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_minutes <= 0:
            raise InputError(f"max_minutes must be positive, got {self.max_minutes}")
        for name, total in (("n_train", SPLIT_SIZES[0]), ("n_val", SPLIT_SIZES[1]), ("n_test", 10_831)):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= total:
                raise InputError(f"{name} must be between 1 and {total}, got {value}")
        if self.lr is None:
            self.lr = LEARNING_RATES[self.arch]


class Regressor(torch.nn.Module):
    r"""A network with its target normalisation: per-atom outputs → a prediction in eV.

    .. math::

        \hat y_s = \operatorname{pool}_{i \in s}\bigl(\sigma\, o_i + \mu_{Z_i}\bigr) + \mu

    computed in float64 (U0 is ~10⁴ eV; float32 would round it to meV).
    """

    def __init__(self, net: torch.nn.Module, norm: Normalisation):
        super().__init__()
        self.net = net
        self.norm = norm
        self.register_buffer("atomref", torch.tensor(norm.atomref, dtype=torch.float64), persistent=False)

    def forward(self, numbers, positions, batch, n_structures: int) -> torch.Tensor:
        out, _ = self.net(numbers, positions, batch)
        per_atom = self.norm.scale * out.double() + self.atomref[numbers]
        pooled = per_atom.new_zeros(n_structures).index_add_(0, batch, per_atom)
        if self.norm.pooling == "mean":
            pooled = pooled / torch.bincount(batch, minlength=n_structures)
        return pooled + self.norm.offset


def learning_rate(progress: float, peak: float, warmup: float = 0.02, final: float = 0.01) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` of the budget, then cosine decay to ``final * peak``.

    Examples
    --------
    >>> [round(learning_rate(p, 1.0), 3) for p in (0.0, 0.01, 0.02, 0.51, 1.0)]
    [0.0, 0.5, 1.0, 0.505, 0.01]
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return peak * progress / warmup
    cosine = 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))
    return peak * (final + (1 - final) * cosine)


@torch.no_grad()
def evaluate(model: Regressor, data: QM9Tensors, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predictions (eV) for the molecules at ``rows``, in that order."""
    was_training = model.training
    model.eval()
    out = []
    for chunk in torch.as_tensor(rows, device=data.device).split(batch_size):
        numbers, positions, batch, _ = data.batch(chunk)
        out.append(model(numbers, positions, batch, len(chunk)).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0)


def _mae_mev(model, data, rows, batch_size) -> float:
    return float(np.mean(np.abs(evaluate(model, data, rows, batch_size) - data.y[rows].cpu().numpy())) * 1000)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def train(config: TrainConfig, out_dir: str | Path | None = None, data: QM9Tensors | None = None,
          command: str | None = None, log=print) -> dict:
    """Train one network under the protocol; write ``model.pt`` and ``manifest.json``; return the manifest.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path, optional
        Where the two files go (default :func:`~cpd_core.models.trained.checkpoint_dir`).
    data : QM9Tensors, optional
        The molecules (default all of QM9 for ``config.target``, on the run's device).
    command : str, optional
        The command line recorded in the manifest (default ``sys.argv``).
    log : callable
        Receives one line per epoch (``None``: silent).
    """
    log = log or (lambda *_: None)
    device = resolve_device(config.device)
    started = time.monotonic()
    data = QM9Tensors(config.target, device) if data is None else data
    parts = split_indices(len(data), config.split_seed,
                          SPLIT_SIZES if len(data) > sum(SPLIT_SIZES) else _small_split(len(data)))
    train_rows = parts["train"][:config.n_train]
    val_rows = parts["val"][:config.n_val]
    test_rows = parts["test"][:config.n_test]
    norm = Normalisation.fit(config.target, data.y[torch.as_tensor(train_rows, device=device)].cpu().numpy(),
                             data.counts(train_rows))
    net = build_network(config.arch, seed=config.seed, **config.hparams)
    model = Regressor(net, norm).to(device=device)
    params = [p for p in net.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    budget_s = config.max_minutes * 60
    n_batches = math.ceil(len(train_rows) / config.batch_size)
    history, best, best_state, best_epoch, since_best, step, stopped_by = [], math.inf, None, 0, 0, 0, "epochs"
    train_started = time.monotonic()
    log(f"{config.arch} on {config.target}: {sum(p.numel() for p in params):,} parameters, "
        f"{len(train_rows):,} train / {len(val_rows):,} val / {len(test_rows):,} test molecules, {device}")
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = torch.as_tensor(train_rows)[torch.randperm(len(train_rows), generator=generator)].to(device)
        losses, out_of_time = [], False
        for i, chunk in enumerate(order.split(config.batch_size)):
            elapsed = time.monotonic() - train_started
            if elapsed >= budget_s:
                out_of_time = True
                break
            progress = max((epoch - 1 + i / n_batches) / config.max_epochs, elapsed / budget_s)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(progress, config.lr, config.warmup, config.final_lr)
            numbers, positions, batch, y = data.batch(chunk)
            loss = ((model(numbers, positions, batch, len(chunk)) - y).abs() / norm.scale).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            step += 1
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.lerp_(p.detach(), 1 - decay)
            losses.append(loss.detach())
        if not losses:
            stopped_by = "time"
            break
        live = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, e in zip(params, ema):
                p.copy_(e)
        val_mae = _mae_mev(model, data, val_rows, config.eval_batch_size)
        history.append({"epoch": epoch, "steps": step, "train_loss": float(torch.stack(losses).mean()),
                        "val_mae_meV": val_mae, "lr": optimizer.param_groups[0]["lr"],
                        "minutes": (time.monotonic() - train_started) / 60, "partial": out_of_time})
        if val_mae < best:
            best, best_epoch, since_best = val_mae, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            since_best += 1
        with torch.no_grad():
            for p, v in zip(params, live):
                p.copy_(v)
        log(f"epoch {epoch:4d}  loss {history[-1]['train_loss']:.4f}  val MAE {val_mae:9.2f} meV  "
            f"lr {history[-1]['lr']:.2e}  {history[-1]['minutes']:6.1f} min" + ("  (time)" if out_of_time else ""))
        if out_of_time:
            stopped_by = "time"
            break
        if since_best >= config.patience:
            stopped_by = "patience"
            break
    train_s = time.monotonic() - train_started
    if best_state is None:
        raise InputError(f"no training step fitted in max_minutes={config.max_minutes}")
    net.load_state_dict(best_state)
    test_mae = _mae_mev(model, data, test_rows, config.eval_batch_size)
    log(f"best epoch {best_epoch}: val MAE {best:.2f} meV, test MAE {test_mae:.2f} meV")
    manifest = {
        "format": CHECKPOINT_FORMAT, "arch": config.arch, "target": config.target,
        "target_unit": "eV", "hparams": net.hparams,
        "n_parameters": sum(p.numel() for p in net.parameters()),
        "split": {"seed": config.split_seed, "sizes": [len(parts[k]) for k in ("train", "val", "test")],
                  "n_train": len(train_rows), "n_val": len(val_rows), "n_test": len(test_rows)},
        "protocol": {**{k: v for k, v in asdict(config).items() if k not in ("arch", "target", "hparams")},
                     "optimizer": "Adam", "loss": "L1 on the standardised target",
                     "schedule": "linear warm-up then cosine decay over the budget (epochs or wall time)"},
        "normalisation": norm.to_dict(),
        "result": {"val_mae_meV": best, "test_mae_meV": test_mae, "best_epoch": best_epoch,
                   "epochs": len(history), "steps": step, "stopped_by": stopped_by,
                   "train_minutes": train_s / 60, "total_minutes": (time.monotonic() - started) / 60},
        "device": _device_name(device), "torch": torch.__version__, "python": platform.python_version(),
        "command": command or shlex.join(["cpd", *sys.argv[1:]]), "git_commit": _git_commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "history": history,
    }
    save(net, manifest, out_dir or checkpoint_dir(config.arch, config.target))
    return manifest


def _small_split(n: int) -> tuple[int, int]:
    """80/10/10 of a data set smaller than QM9 (tests, custom arrays)."""
    n_val = max(1, n // 10)
    return max(1, n - 2 * n_val), n_val


def save(net: torch.nn.Module, manifest: dict, out_dir: str | Path) -> Path:
    """Write ``model.pt`` (float32 weights + what rebuilds the network) and ``manifest.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in net.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "arch": manifest["arch"], "hparams": manifest["hparams"],
                "target": manifest["target"], "normalisation": manifest["normalisation"], "state_dict": state},
               out_dir / "model.pt")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir


__all__ = ["LEARNING_RATES", "MAX_Z", "Regressor", "TrainConfig", "evaluate", "learning_rate", "save", "train"]
