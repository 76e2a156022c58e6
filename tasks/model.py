"""The demand network: a feed-forward regressor on the preprocessed features, its training and its file."""

from __future__ import annotations

import copy
import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks import mkl_refusal
from tasks.stage import InputError, atomic_path, verify_against_lock


@dataclass(frozen=True)
class Hyperparameters:
    """One point of the search space (see `tune.search_space` in params.yaml)."""

    units: list[int]  # one entry per hidden layer
    dropout: list[float]  # one entry per hidden layer
    batch_norm: bool
    optimizer: str  # "adam", "adamw" or "sgd"
    learning_rate: float
    batch_size: int


class DemandNet(nn.Module):
    """Hidden layers of Linear, optional BatchNorm, ReLU and Dropout; one linear output (log1p quantity)."""

    def __init__(self, n_features: int, hyperparameters: Hyperparameters) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for units, dropout in zip(hyperparameters.units, hyperparameters.dropout, strict=True):
            layers.append(nn.Linear(width, units))
            if hyperparameters.batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.layers(features)
        return output


def make_deterministic(seed: int, threads: int) -> None:
    """Seed every generator and pin the thread count: same inputs, same weights, same bytes. Refuses, in
    one line, to compute where MKL runs another branch than the numeric platform's (tasks/__init__.py)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    if (refusal := mkl_refusal()) is not None:
        raise InputError(refusal)


def _optimizer(model: nn.Module, hyperparameters: Hyperparameters) -> torch.optim.Optimizer:
    rate = hyperparameters.learning_rate
    if hyperparameters.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=rate)
    if hyperparameters.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=rate)
    if hyperparameters.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=rate, momentum=0.9)
    raise ValueError(f"unknown optimizer {hyperparameters.optimizer!r}")


def predict(model: nn.Module, features: torch.Tensor, batch_size: int = 65_536) -> torch.Tensor:
    """Predictions in evaluation mode, batch by batch to bound memory."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(chunk) for chunk in features.split(batch_size)]).squeeze(1)


@dataclass
class TrainingResult:
    model: DemandNet
    best_val_loss: float
    best_epoch: int  # 1-based
    epochs_run: int


def train(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    hyperparameters: Hyperparameters,
    *,
    seed: int,
    max_epochs: int,
    patience: int,
    after_epoch: Callable[[int, float], None] | None = None,
) -> TrainingResult:
    """Train with MSE on log1p(quantity); stop when validation loss has not improved for `patience`
    epochs and return the model with the best validation weights restored.

    `after_epoch(epoch, val_loss)` may raise (Optuna's pruner does) to stop early.
    """
    torch.manual_seed(seed)
    model = DemandNet(train_x.shape[1], hyperparameters)
    optimizer = _optimizer(model, hyperparameters)
    shuffle = torch.Generator().manual_seed(seed)
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        for batch in torch.randperm(len(train_x), generator=shuffle).split(hyperparameters.batch_size):
            if len(batch) < 2 and hyperparameters.batch_norm:
                continue  # batch norm cannot train on a single row
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(train_x[batch]).squeeze(1), train_y[batch])
            loss.backward()
            optimizer.step()
        val_loss = float(nn.functional.mse_loss(predict(model, val_x), val_y))
        if not np.isfinite(val_loss):
            break  # diverged: keep the best weights so far
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        if after_epoch is not None:
            after_epoch(epoch, val_loss)
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainingResult(model=model, best_val_loss=best_loss, best_epoch=best_epoch, epochs_run=epoch)


def save_model(path: Path, model: DemandNet, hyperparameters: Hyperparameters, feature_names: list[str]) -> None:
    """State dict plus what rebuilds the network; only tensors and plain values, so loading needs no pickle."""
    payload = {
        "state_dict": model.state_dict(),
        "hyperparameters": asdict(hyperparameters),
        "feature_names": feature_names,
    }
    # torch.save names the archive inside the file after the file it writes to; saving to memory
    # names it "archive" instead of after the random temporary file, so the bytes are reproducible.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_model(path: Path) -> tuple[DemandNet, list[str]]:
    """Load a model saved by `save_model`, only after its md5 matches dvc.lock, with weights_only=True."""
    verify_against_lock(path)
    data = path.read_bytes()
    return model_from_bytes(data, hashlib.md5(data).hexdigest(), str(path))


def verify_bytes(data: bytes, md5: str, label: str) -> None:
    """Refuse bytes that do not hash to `md5` (the ledger's or dvc.lock's), before anything unpickles them."""
    if (found := hashlib.md5(data).hexdigest()) != md5:
        raise InputError(f"{label}: md5 {found} differs from {md5}, which was recorded; refusing to load it")


def model_from_bytes(data: bytes, md5: str, label: str) -> tuple[DemandNet, list[str]]:
    """A model saved by `save_model`, from bytes that must hash to `md5`, with weights_only=True."""
    verify_bytes(data, md5, label)
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
        hyperparameters = Hyperparameters(**payload["hyperparameters"])
        model = DemandNet(len(payload["feature_names"]), hyperparameters)
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError, EOFError) as error:
        raise InputError(f"{label}: not a model file this code can load ({str(error).splitlines()[0]})") from None
    model.eval()
    return model, list(payload["feature_names"])
