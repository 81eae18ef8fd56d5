"""The ML signal model: train, persist, load and query P(forward return > 0).

Covers: labelling candles by the sign of the forward return over `horizon` candles, training a
small gradient-boosted classifier on `indicators.feature_frame` rows, atomic joblib files that
record the feature names they were trained on, and first-start training via `ensure_model`.
Does not cover: feature definitions (see `indicators`) or turning the probability into an
entry (see `signals`).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import ThreadpoolController, threadpool_limits

from crypto_bot.memory import validation
from crypto_bot.strategy.indicators import FEATURE_NAMES, feature_frame

logger = logging.getLogger(__name__)

MIN_TRAINING_ROWS = 200
_FILE_FORMAT_VERSION = 1


class ModelLoadError(Exception):
    """A model file is missing, corrupt, or was trained on other features; the caller may retrain."""


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


def train_signal_model(
    frames: Iterable[pd.DataFrame], *, horizon: int = 5, seed: int = 0
) -> HistGradientBoostingClassifier:
    """Fit a shallow gradient-boosted classifier on all frames' labelled rows.

    Each frame is featurised on its own, so no window straddles two symbols. Shallow trees and
    a fixed number of iterations keep training near a second on tens of thousands of rows.
    """
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
    model = HistGradientBoostingClassifier(
        max_iter=100, max_depth=3, learning_rate=0.05, early_stopping=False, random_state=seed
    )
    with threadpool_limits(limits=1):  # see up_probabilities: OpenMP start-up dominates on small data
        model.fit(features, labels)
    logger.info("trained signal model on %d candles from %d frames", len(labels), len(per_frame))
    return model


def save_model(model: Any, path: str | os.PathLike[str]) -> None:
    """Write the model with its feature names to path atomically (temp file + fsync + os.replace)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": _FILE_FORMAT_VERSION, "feature_names": FEATURE_NAMES, "model": model}
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            joblib.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model written by save_model; ModelLoadError naming the path if it cannot be used."""
    try:
        payload = joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot load signal model from {os.fspath(path)}: {exc!r}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != _FILE_FORMAT_VERSION:
        raise ModelLoadError(f"{os.fspath(path)} is not a signal model file (format {_FILE_FORMAT_VERSION})")
    if tuple(payload.get("feature_names", ())) != FEATURE_NAMES:
        raise ModelLoadError(
            f"signal model at {os.fspath(path)} was trained on features {payload.get('feature_names')}, "
            f"current features are {FEATURE_NAMES}; retrain it"
        )
    return payload["model"]


def ensure_model(
    path: str | os.PathLike[str],
    frames_factory: Callable[[], Iterable[pd.DataFrame]],
    *,
    horizon: int = 5,
    seed: int = 0,
) -> Any:
    """Load the model at path, or on first start train it from frames_factory() and save it.

    An existing but unusable file raises ModelLoadError instead of being silently replaced.
    """
    if Path(path).exists():
        return load_model(path)
    logger.info("no signal model at %s: training one", os.fspath(path))
    model = train_signal_model(frames_factory(), horizon=horizon, seed=seed)
    save_model(model, path)
    return model


def predict_up_probability(model: Any, df: pd.DataFrame) -> float:
    """P(close rises over the trained horizon) for the latest candle of df."""
    return float(up_probabilities(model, feature_frame(df).to_numpy(dtype="float64")[-1:])[0])


def up_probabilities(model: Any, feature_rows: np.ndarray) -> np.ndarray:
    """P(up) for each row of features, in one call.

    One thread: for a handful of rows, OpenMP's start-up per tree costs far more than the
    prediction itself (about 0.6 ms a tree on 2 busy cores, against microseconds of work).
    """
    up_column = list(model.classes_).index(1)
    with _thread_pools().limit(limits=1):
        return model.predict_proba(feature_rows)[:, up_column]


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The thread pools of the loaded libraries, found once: `threadpool_limits` looks them up on every call
    (5 ms, against 0.02 ms for a limit on a kept controller), and the strategy predicts once per symbol."""
    return ThreadpoolController()
