"""The ML signal model: train, persist, load and query P(forward return > 0).

Covers: labelling candles by the sign of the forward return over `horizon` candles, training an
L2-regularised logistic regression on standardised `indicators.feature_frame` rows with numpy alone
(Newton's method), atomic `.npz` files (plain arrays, no pickle) that record the feature names they
were trained on, and first-start training via `ensure_model`.
Does not cover: feature definitions (see `indicators`) or turning the probability into an
entry (see `signals`).

Why numpy and not scikit-learn: on held-out simulated history the logistic regression is as accurate
as the gradient-boosted trees it replaced (55.7% against 55.3% of directions, AUC 0.58 against 0.57),
and importing scikit-learn cost the bot 90 MiB of the 169 MiB it had at cycle 60 (`bench/bench_footprint.py`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crypto_bot.memory import validation
from crypto_bot.strategy.indicators import FEATURE_NAMES, feature_frame
from crypto_bot.strategy.warmup import MIN_TRAINING_ROWS

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

L2_PENALTY = 1.0  # on standardised features; scikit-learn's LogisticRegression default (C=1) for the same fit
_FILE_FORMAT_VERSION = 2  # 1 was a joblib pickle of scikit-learn trees: refused, then retrained by the bot
_NEWTON_MAX_STEPS = 50
_NEWTON_TOLERANCE = 1e-10


class ModelLoadError(Exception):
    """A model file is missing, corrupt, or was trained on other features; the caller may retrain."""


@dataclass(frozen=True, slots=True, eq=False)
class SignalModel:
    """P(up) = sigmoid(((features - mean) / scale) @ weights + intercept): ten numbers and their scaling."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float

    def up_probabilities(self, feature_rows: np.ndarray) -> np.ndarray:
        """P(up) for each row of features (shape (rows, features))."""
        logits = ((np.asarray(feature_rows, dtype=np.float64) - self.mean) / self.scale) @ self.weights + self.intercept
        return _sigmoid(logits)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # = 1 / (1 + exp(-x)), without overflow for large |x|


def labelled_rows(df: pd.DataFrame, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels (1 if close[t+horizon] > close[t]) for rows where both are defined."""
    validation.integer("horizon", horizon, minimum=1)
    features = feature_frame(df)
    close = df["close"].astype("float64")
    current_close = close.reindex(features.index).to_numpy()
    forward_close = close.shift(-horizon).reindex(features.index).to_numpy()
    known = ~np.isnan(forward_close)
    labels = (forward_close[known] > current_close[known]).astype(np.int8)
    return features.to_numpy(dtype="float64")[known], labels


def train_signal_model(frames: Iterable[pd.DataFrame], *, horizon: int = 5) -> SignalModel:
    """Fit the logistic regression on all frames' labelled rows (each frame featurised on its own, so no
    window straddles two symbols); a few Newton steps, milliseconds on tens of thousands of rows."""
    per_frame = [labelled_rows(frame, horizon) for frame in frames]
    if not per_frame:
        raise ValueError("frames is empty: the signal model needs at least one OHLCV frame")
    features = np.concatenate([rows for rows, _ in per_frame])
    labels = np.concatenate([frame_labels for _, frame_labels in per_frame])
    if len(labels) < MIN_TRAINING_ROWS:
        raise ValueError(
            f"the signal model needs at least {MIN_TRAINING_ROWS} labelled candles, got {len(labels)}"
        )
    if np.unique(labels).size < 2:
        raise ValueError("training labels contain a single class: the frames never move both ways")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0.0] = 1.0  # a constant feature carries no information: leave it unscaled
    weights, intercept = _fit_logistic((features - mean) / scale, labels.astype(np.float64))
    logger.info("trained signal model on %d candles from %d frames", len(labels), len(per_frame))
    return SignalModel(FEATURE_NAMES, mean, scale, weights, intercept)


def _fit_logistic(standardised: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimise the log loss plus L2_PENALTY / 2 * |weights|^2 (the intercept unpenalised) by Newton's method:
    the problem is convex and has eleven unknowns, so each step solves it almost exactly."""
    rows, columns = standardised.shape
    design = np.hstack([standardised, np.ones((rows, 1))])
    penalty = np.full(columns + 1, L2_PENALTY)
    penalty[-1] = 0.0
    coefficients = np.zeros(columns + 1)
    for _ in range(_NEWTON_MAX_STEPS):
        probabilities = _sigmoid(design @ coefficients)
        gradient = design.T @ (probabilities - labels) + penalty * coefficients
        curvature = probabilities * (1.0 - probabilities)
        hessian = (design * curvature[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        coefficients -= step
        if np.max(np.abs(step)) < _NEWTON_TOLERANCE:
            break
    return coefficients[:-1], float(coefficients[-1])


def save_model(model: SignalModel, path: str | os.PathLike[str]) -> None:
    """Write the model with its feature names to path atomically (temp file + fsync + os.replace)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(
                handle,
                format_version=np.array(_FILE_FORMAT_VERSION),
                feature_names=np.array(model.feature_names),
                mean=model.mean,
                scale=model.scale,
                weights=model.weights,
                intercept=np.array(model.intercept),
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def load_model(path: str | os.PathLike[str]) -> SignalModel:
    """Load a model written by save_model; ModelLoadError naming the path if it cannot be used."""
    name = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with loaded as arrays:
            fields = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"cannot load signal model from {name}: {exc!r}") from exc
    format_version = fields.get("format_version")
    if format_version is None or format_version.shape != () or int(format_version) != _FILE_FORMAT_VERSION:
        raise ModelLoadError(f"{name} is not a signal model file (format {_FILE_FORMAT_VERSION})")
    feature_names = tuple(str(feature) for feature in fields.get("feature_names", ()))
    if feature_names != FEATURE_NAMES:
        raise ModelLoadError(
            f"signal model at {name} was trained on features {feature_names}, current features are {FEATURE_NAMES}; "
            "retrain it"
        )
    try:
        model = SignalModel(
            feature_names,
            *(np.asarray(fields[key], dtype=np.float64).reshape(len(FEATURE_NAMES)) for key in ("mean", "scale", "weights")),
            intercept=float(fields["intercept"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"signal model at {name} is incomplete: {exc!r}; retrain it") from exc
    if not all(np.isfinite(array).all() for array in (model.mean, model.scale, model.weights, model.intercept)):
        raise ModelLoadError(f"signal model at {name} holds non-finite coefficients; retrain it")
    return model


def ensure_model(
    path: str | os.PathLike[str],
    frames_factory: Callable[[], Iterable[pd.DataFrame]],
    *,
    horizon: int = 5,
) -> SignalModel:
    """Load the model at path, or on first start train it from frames_factory() and save it.

    An existing but unusable file raises ModelLoadError instead of being silently replaced.
    """
    if Path(path).exists():
        return load_model(path)
    logger.info("no signal model at %s: training one", os.fspath(path))
    model = train_signal_model(frames_factory(), horizon=horizon)
    save_model(model, path)
    return model


def predict_up_probability(model: SignalModel, df: pd.DataFrame) -> float:
    """P(close rises over the trained horizon) for the latest candle of df."""
    return float(up_probabilities(model, feature_frame(df).to_numpy(dtype="float64")[-1:])[0])


def up_probabilities(model: SignalModel, feature_rows: np.ndarray) -> np.ndarray:
    """P(up) for each row of features, in one call."""
    return model.up_probabilities(feature_rows)
