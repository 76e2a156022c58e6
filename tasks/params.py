"""Typed params.yaml: one pydantic model; an unknown key, a wrong type or a bad value is an error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.stage import InputError

PARAMS_FILE = Path("params.yaml")


class _Strict(BaseModel):
    # strict: YAML already gives typed values, so "5" for an int or "false" for a bool is a
    # mistake to report, not to coerce (argparse's type=bool turned "false" into True).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DriftInjection(_Strict):
    """Distribution drift the synthetic generator injects, for exercising the drift gate."""

    # first day with drift, quoted ("2011-11-01": DVC cannot read a YAML date); null injects none.
    # Lax, so that the quoted text reads as a date.
    start: Annotated[dt.date | None, Field(strict=False)] = None
    price_factor: Annotated[float, Field(gt=0)] = 1.5
    non_uk_share: Annotated[float, Field(ge=0, le=1)] = 0.35


class DataParams(_Strict):
    source: Annotated[str, Field(min_length=1)] = "synthetic"  # "synthetic" or a file under data/raw/
    rows: Annotated[int, Field(gt=0)] = 541_909  # synthetic size
    stockcode: str = ""  # "" keeps every product
    inject_drift: DriftInjection = DriftInjection()


class DriftGate(_Strict):
    """The drift_check stage's windows and verdict, and the override preprocess honours."""

    current_weeks: Annotated[int, Field(gt=0)] = 4  # the current window: the last N weeks of data
    reference_weeks: Annotated[int, Field(gt=0)] = 12  # the window before it, when `reference` is ""
    reference: str = ""  # "" or a Parquet snapshot under data/reference/ (the production model's training data)
    columns: Annotated[list[str], Field(min_length=1)] = [
        "unit_price",
        "prev_month_avg_quantity",
        "is_registered",
        "country",
        "log_quantity",
    ]
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5  # drift when the share of drifted columns >= this
    # Evidently tests a seeded sample of at most this many rows per window (every row of a smaller
    # window). Above 1,000 rows, where Evidently picks the same tests as on the whole window.
    sample_rows: Annotated[int, Field(gt=1_000)] = 200_000
    allow: bool = False  # let preprocess run despite a drift verdict; needs allowed_by and reason
    allowed_by: str = ""
    reason: str = ""

    @model_validator(mode="after")
    def _override_is_attributed(self) -> DriftGate:
        if self.allow and not (self.allowed_by.strip() and self.reason.strip()):
            raise ValueError("drift.allow: true needs drift.allowed_by (a person) and drift.reason")
        return self


class PreprocessParams(_Strict):
    """Chronological split sizes and the one-hot encoder's rare-category cut-off."""

    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15
    min_category_rows: Annotated[int, Field(gt=0)] = 100  # rarer categories share one "other" column
    fit_rows: Annotated[int, Field(gt=0)] = 1_000_000  # the transformer's fitting sample of training rows, at most

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> PreprocessParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("preprocess.val_fraction + preprocess.test_fraction must be below 1")
        return self


_Range = Annotated[list[float], Field(min_length=2, max_length=2)]
_IntRange = Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=2, max_length=2)]


class SearchSpace(_Strict):
    """What Optuna's TPE sampler may choose: [low, high] ranges and lists of choices."""

    layers: _IntRange = [1, 3]
    units: _IntRange = [16, 128]  # per hidden layer, sampled on a log scale
    dropout: _Range = [0.0, 0.3]  # per hidden layer
    batch_norm: Annotated[list[bool], Field(min_length=1)] = [True, False]
    optimizer: Annotated[list[Literal["adam", "adamw", "sgd"]], Field(min_length=1)] = ["adam", "adamw"]
    learning_rate: _Range = [0.0003, 0.01]  # sampled on a log scale
    batch_size: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)] = [256, 512, 1024]

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> SearchSpace:
        for name in ("layers", "units", "dropout", "learning_rate"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"tune.search_space.{name}: low {low} is above high {high}")
        if not (self.dropout[0] >= 0 and self.dropout[1] < 1):
            raise ValueError("tune.search_space.dropout: must lie in [0, 1)")
        if self.learning_rate[0] <= 0:
            raise ValueError("tune.search_space.learning_rate: must be positive")
        return self


class TuneParams(_Strict):
    """Bayesian search with a fixed trial count (never a wall-clock budget), then a final fit."""

    n_trials: Annotated[int, Field(gt=0)] = 20
    # Trials decided together, then evaluated anywhere (in order, or on several workers at once) before
    # any of their results is told: results depend on it, never on the number of workers. 1: sequential;
    # 2, so that the stage's own two processes on a 2-core machine each evaluate one trial of a batch.
    parallel_trials: Annotated[int, Field(gt=0)] = 2
    max_epochs: Annotated[int, Field(gt=0)] = 30
    patience: Annotated[int, Field(gt=0)] = 4  # epochs without validation improvement before stopping
    trial_rows: Annotated[int, Field(ge=0)] = 60_000  # trials train on a seeded sample this size; 0 = all
    fit_rows: Annotated[int, Field(gt=0)] = 500_000  # the final fit and the baseline: a seeded sample this size at most
    val_rows: Annotated[int, Field(gt=0)] = 200_000  # validation (early stopping, pruning): a seeded sample at most
    # Torch threads; fixed, because results depend on it. 1, because with 2 a trial with batch norm now
    # and then gave another loss on a loaded machine (seen in CI, never alone): the same inputs, other bytes.
    threads: Annotated[int, Field(gt=0)] = 1
    baseline_max_iter: Annotated[int, Field(gt=0)] = 200  # boosting rounds of the baseline
    search_space: SearchSpace = SearchSpace()


class InferenceParams(_Strict):
    shap_background: Annotated[int, Field(gt=0)] = 200  # seeded sample of training rows
    shap_explained: Annotated[int, Field(gt=0)] = 1000  # seeded sample of test rows


class FairnessParams(_Strict):
    """The fairness policy (README "Fairness policy"): the groups compared, the criteria that decide and
    their bounds, judged on the point value or on the far end of a seeded bootstrap 95% interval."""

    # Each attribute is judged on its own: its column in the predictions, and the value of its privileged group.
    attributes: Annotated[dict[Literal["is_registered", "country"], int | str], Field(min_length=1)] = {
        "is_registered": 1,
        "country": "United Kingdom",
    }
    criteria: Annotated[
        list[Literal["log_residual_gap", "error_ratio", "mean_outcome_difference"]], Field(min_length=1)
    ] = ["log_residual_gap", "error_ratio"]
    max_log_residual_gap: Annotated[float, Field(gt=0)] = 0.25  # |difference of mean log1p-residuals|
    max_error_ratio: Annotated[float, Field(ge=1)] = 1.5  # RMSLE of the worse-served group / the other's
    mod_threshold: Annotated[float, Field(ge=0)] = 1.0  # |mean outcome difference| in units, if chosen
    judge: Literal["point", "interval"] = "interval"
    min_group_rows: Annotated[int, Field(ge=20)] = 200  # a smaller group fails its attribute: too few to judge
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000  # seeded resamples behind each interval


class AccuracyParams(_Strict):
    """The accuracy gate (gates/accuracy.py): the network's test RMSLE over the baseline's, judged on the point
    value or on the far end of a seeded bootstrap 95% interval, as the fairness criteria are."""

    max_ratio: Annotated[float, Field(gt=0)] = 1.10  # above it, the network is worse than the baseline allows
    judge: Literal["point", "interval"] = "interval"
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000  # seeded resamples of the test rows


class GateParams(_Strict):
    """Gates whose stage has no params section of its own (the drift and fairness gates are their stages')."""

    accuracy: AccuracyParams = AccuracyParams()


class Params(_Strict):
    seed: Annotated[int, Field(ge=0)]
    data: DataParams
    drift: DriftGate = DriftGate()
    preprocess: PreprocessParams = PreprocessParams()
    tune: TuneParams = TuneParams()
    inference: InferenceParams = InferenceParams()
    fairness: FairnessParams = FairnessParams()
    gates: GateParams = GateParams()


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise InputError with one line naming the bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not valid YAML ({first_line})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of keys at the top level")
    dated = _first_yaml_date(raw)
    if dated is not None:
        key, value = dated
        raise InputError(f'{path}: {key}: {value} is a YAML date, which DVC cannot read; quote it: "{value}"')
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise InputError(f"{path}: {_describe(error)}") from None


def _first_yaml_date(value: object, key: str = "") -> tuple[str, str] | None:
    """The dotted key and text of the first unquoted date or time (2011-11-01), which YAML reads as a date:
    DVC reads params.yaml's values itself and cannot handle one (`make run` ended in a traceback), so it is
    refused here first."""
    if isinstance(value, dt.date):  # a datetime is a date too
        return key, str(value)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for name, item in items:
        found = _first_yaml_date(item, f"{key}.{name}" if key else str(name))
        if found is not None:
            return found
    return None


def _describe(error: ValidationError) -> str:
    """The first problem as `key.path: problem (got value)`; the count of others, if any."""
    problems = error.errors()
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"]) or "<top level>"
    if first["type"] == "extra_forbidden":
        text = f"{key}: unknown key"
    elif first["type"] == "value_error":  # our own cross-field checks already name their keys
        text = str(first["msg"]).removeprefix("Value error, ")
    elif first["type"] == "missing":
        text = f"{key}: missing key"
    else:
        text = f"{key}: {first['msg']} (got {first['input']!r})"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem(s))"
    return text
