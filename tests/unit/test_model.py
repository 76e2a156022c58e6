"""The demand network: shape, deterministic training, early stopping, and safe saving and loading."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tasks.metrics import regression_metrics, to_quantity
from tasks.model import DemandNet, Hyperparameters, load_model, make_deterministic, predict, save_model, train
from tasks.stage import InputError, file_md5

HYPER = Hyperparameters(
    units=[16, 8], dropout=[0.1, 0.0], batch_norm=True, optimizer="adam", learning_rate=0.01, batch_size=64
)


def _data(rows: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, 5, generator=generator)
    target = features[:, 0] * 0.8 - features[:, 1] * 0.3 + 0.05 * torch.randn(rows, generator=generator)
    return features, target


def _train(**overrides: object) -> tuple[DemandNet, float, int, int]:
    make_deterministic(seed=1, threads=1)
    train_x, train_y = _data(600, seed=0)
    val_x, val_y = _data(200, seed=1)
    options: dict[str, object] = {"seed": 3, "max_epochs": 8, "patience": 3, **overrides}
    result = train(train_x, train_y, val_x, val_y, HYPER, **options)  # type: ignore[arg-type]
    return result.model, result.best_val_loss, result.best_epoch, result.epochs_run


def test_network_layers_follow_the_hyperparameters() -> None:
    model = DemandNet(5, HYPER)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    plain = DemandNet(5, Hyperparameters([4], [0.0], False, "sgd", 0.1, 8))
    assert [type(layer).__name__ for layer in plain.layers] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert predict(model, torch.zeros(3, 5)).shape == (3,)


def test_same_seed_same_weights_and_same_file_bytes(tmp_path: Path) -> None:
    first, *_ = _train()
    second, *_ = _train()
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    save_model(tmp_path / "a.pt", first, HYPER, ["f0", "f1", "f2", "f3", "f4"])
    save_model(tmp_path / "b.pt", second, HYPER, ["f0", "f1", "f2", "f3", "f4"])
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_training_learns_and_restores_the_best_validation_weights() -> None:
    model, best_loss, best_epoch, epochs_run = _train(max_epochs=12)
    val_x, val_y = _data(200, seed=1)
    restored = float(torch.nn.functional.mse_loss(predict(model, val_x), val_y))
    assert restored == pytest.approx(best_loss, rel=1e-5)
    assert best_loss < float(val_y.var())  # better than predicting the mean
    assert 1 <= best_epoch <= epochs_run <= 12


def test_early_stopping_ends_after_patience_epochs_without_improvement() -> None:
    losses: list[float] = []
    make_deterministic(seed=1, threads=1)
    train_x, train_y = _data(200)
    noise = torch.randn(200, generator=torch.Generator().manual_seed(9))  # unlearnable validation target
    result = train(
        train_x, train_y, train_x, noise, HYPER, seed=3, max_epochs=50, patience=2,
        after_epoch=lambda epoch, loss: losses.append(loss),
    )  # fmt: skip
    assert result.epochs_run == len(losses) < 50
    assert result.epochs_run - result.best_epoch == 2
    assert result.best_val_loss == min(losses)


def _lock(tmp_path: Path, path: Path, md5: str) -> Path:
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"tune": {"outs": [{"path": str(path), "md5": md5}]}}}))
    return lock


def test_saved_model_loads_with_weights_only_after_its_md5_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model, *_ = _train()
    path = Path("models/model.pt")
    save_model(path, model, HYPER, ["f0", "f1", "f2", "f3", "f4"])
    payload = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)  # no pickle of code needed
    assert set(payload) == {"state_dict", "hyperparameters", "feature_names"}
    _lock(tmp_path, path, file_md5(path))
    loaded, names = load_model(path)
    assert names == ["f0", "f1", "f2", "f3", "f4"]
    sample = torch.randn(4, 5)
    assert torch.equal(predict(loaded, sample), predict(model, sample))


def test_a_tampered_model_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model, *_ = _train()
    path = Path("models/model.pt")
    save_model(path, model, HYPER, ["f0", "f1", "f2", "f3", "f4"])
    recorded = file_md5(path)
    _lock(tmp_path, path, recorded)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(InputError, match=rf"^models/model\.pt: md5 \w+ differs from {recorded} recorded in dvc\.lock"):
        load_model(path)


@pytest.mark.parametrize(
    ("lock_text", "expected"),
    [
        (None, r"dvc\.lock: not found"),
        ("stages: [unclosed", r"dvc\.lock: corrupted"),
        ("schema: '2.0'\nstages: {}\n", r"dvc\.lock: no recorded md5 for models/model\.pt"),
    ],
)
def test_a_model_without_a_trustworthy_lock_entry_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock_text: str | None, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = Path("models/model.pt")
    save_model(path, DemandNet(5, HYPER), HYPER, ["f0", "f1", "f2", "f3", "f4"])
    if lock_text is not None:
        (tmp_path / "dvc.lock").write_text(lock_text)
    with pytest.raises(InputError, match=expected):
        load_model(path)


def test_quantity_metrics_by_hand() -> None:
    assert to_quantity([np.log1p(4.0), -1.0]).tolist() == pytest.approx([4.0, 0.0])  # negatives mean zero
    metrics = regression_metrics([1.0, 3.0], [2.0, 3.0])
    assert metrics["mse"] == pytest.approx(0.5)
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["rmsle"] == pytest.approx(np.sqrt(((np.log(3) - np.log(2)) ** 2) / 2))
