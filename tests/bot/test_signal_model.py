"""The ML signal model (train, persist, load, first-start training), the built-in scoring rule and entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_bot.strategy import (
    FEATURE_NAMES,
    ModelLoadError,
    Regime,
    Signal,
    SignalModel,
    ensure_model,
    feature_matrix,
    labelled_rows,
    load_model,
    predict_up_probability,
    required_candles,
    builtin_score,
    entry_signal,
    save_model,
    train_signal_model,
)
from tests.bot.support import snapshot
from tests.bot.test_indicators import ohlcv


def mean_reverting_frame(seed: int, candles: int = 2000) -> pd.DataFrame:
    """Log price follows x[t] = 0.8 x[t-1] + noise: stretched prices snap back, so direction is learnable."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 0.01, candles)
    log_price = np.zeros(candles)
    for step in range(1, candles):
        log_price[step] = 0.8 * log_price[step - 1] + shocks[step]
    return ohlcv(100.0 * np.exp(log_price))


@pytest.fixture(scope="module")
def training_frames() -> list[pd.DataFrame]:
    return [mean_reverting_frame(seed) for seed in range(3)]


@pytest.fixture(scope="module")
def model(training_frames: list[pd.DataFrame]):
    return train_signal_model(training_frames, horizon=5)


# --- labels ------------------------------------------------------------------------------


def test_labels_are_the_sign_of_the_forward_return() -> None:
    frame = mean_reverting_frame(seed=7, candles=120)
    features, labels = labelled_rows(frame, horizon=5)
    first_row = required_candles() - 1
    close = frame["close"].to_numpy()
    expected = close[first_row + 5 :] > close[first_row:-5]
    assert features.shape == (len(frame) - first_row - 5, len(FEATURE_NAMES))
    np.testing.assert_array_equal(labels, expected.astype(np.int8))


def test_labelled_features_are_the_feature_matrix_without_its_last_horizon_rows() -> None:
    frame = mean_reverting_frame(seed=8, candles=120)
    features, _ = labelled_rows(frame, horizon=5)
    np.testing.assert_array_equal(features, feature_matrix(frame)[:-5])


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="horizon"):
        labelled_rows(mean_reverting_frame(seed=9, candles=100), horizon=0)


# --- training ----------------------------------------------------------------------------


def test_model_predicts_direction_of_mean_reverting_prices_better_than_chance(model) -> None:
    features, labels = labelled_rows(mean_reverting_frame(seed=100), horizon=5)
    accuracy = float(((model.up_probabilities(features) > 0.5) == labels).mean())
    assert accuracy > 0.6


def test_up_probability_is_a_probability_for_the_latest_candle(model) -> None:
    probability = predict_up_probability(model, mean_reverting_frame(seed=101, candles=200))
    assert isinstance(probability, float)
    assert 0.0 <= probability <= 1.0


def test_stretched_price_predicts_a_fall(model) -> None:
    # after a sharp rally the mean-reverting model expects the price to come back down
    frame = mean_reverting_frame(seed=102, candles=200)
    frame.loc[frame.index[-5:], ["high", "low", "close"]] *= np.linspace(1.01, 1.05, 5)[:, None]
    assert predict_up_probability(model, frame) < 0.5


def test_training_needs_at_least_one_frame() -> None:
    with pytest.raises(ValueError, match="frames is empty"):
        train_signal_model([])


def test_training_rejects_too_few_labelled_candles() -> None:
    with pytest.raises(ValueError, match="at least 200 labelled candles"):
        train_signal_model([mean_reverting_frame(seed=5, candles=100)])


def test_training_rejects_a_frame_too_short_for_indicators() -> None:
    with pytest.raises(ValueError, match="at least"):
        train_signal_model([mean_reverting_frame(seed=6, candles=10)])


# --- persistence -------------------------------------------------------------------------


def test_predictions_are_equal_after_save_and_load(model, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    save_model(model, path)
    features, _ = labelled_rows(mean_reverting_frame(seed=103), horizon=5)
    np.testing.assert_array_equal(load_model(path).up_probabilities(features), model.up_probabilities(features))


def test_save_creates_the_parent_directory_and_leaves_no_temp_file(model, tmp_path: Path) -> None:
    path = tmp_path / "models" / "nested" / "model.npz"
    save_model(model, path)
    assert [entry.name for entry in path.parent.iterdir()] == ["model.npz"]


def test_ensure_model_trains_on_first_start_then_loads(training_frames: list[pd.DataFrame], tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    factory_calls: list[int] = []

    def frames_factory() -> list[pd.DataFrame]:
        factory_calls.append(1)
        return training_frames

    first = ensure_model(path, frames_factory)
    second = ensure_model(path, frames_factory)
    assert len(factory_calls) == 1
    assert path.exists()
    frame = mean_reverting_frame(seed=104, candles=200)
    assert predict_up_probability(second, frame) == predict_up_probability(first, frame)


def test_training_matches_the_l2_regularised_logistic_regression_optimum(training_frames) -> None:
    # At the optimum the gradient of log loss + |w|^2 / 2 vanishes: the Newton fit got there, not near it.
    model = train_signal_model(training_frames, horizon=5)
    features, labels = np.concatenate([labelled_rows(frame, 5)[0] for frame in training_frames]), np.concatenate(
        [labelled_rows(frame, 5)[1] for frame in training_frames]
    )
    standardised = (features - model.mean) / model.scale
    residual = model.up_probabilities(features) - labels
    np.testing.assert_allclose(standardised.T @ residual + model.weights, 0.0, atol=1e-6)
    assert abs(residual.sum()) < 1e-6


def test_a_scikit_learn_model_file_of_the_old_format_is_refused_for_retraining(tmp_path: Path) -> None:
    path = tmp_path / "signal_model.joblib"
    path.write_bytes(b"\x80\x04\x95 a joblib pickle of the trees the bot used before")
    with pytest.raises(ModelLoadError, match=str(path)):
        load_model(path)


def test_corrupt_model_file_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(b"\x00 definitely not a pickle")
    with pytest.raises(ModelLoadError, match=str(path)):
        load_model(path)


def test_ensure_model_does_not_overwrite_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match=str(path)):
        ensure_model(path, lambda: pytest.fail("must not train over an existing file"))
    assert path.read_bytes() == b"garbage"


def test_model_trained_on_other_features_must_be_retrained(model, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    other = SignalModel(("rsi_ratio",), model.mean[:1], model.scale[:1], model.weights[:1], model.intercept)
    save_model(other, path)
    with pytest.raises(ModelLoadError, match="retrain"):
        load_model(path)


def test_missing_model_file_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.npz"
    with pytest.raises(ModelLoadError, match=str(path)):
        load_model(path)


# --- the built-in scoring rule ------------------------------------------------------------


def test_confident_model_in_an_uptrend_scores_long() -> None:
    # long score 0.5 * 0.8 + 0.3 * 1 (trend aligned) + 0.2 * 0.5 (RSI 50 is neutral) = 0.8: 2 * 0.8 - 1
    assert builtin_score(snapshot(), Regime.TRENDING_UP, 0.8) == pytest.approx(0.6)


def test_bearish_model_in_a_downtrend_when_overbought_scores_short() -> None:
    # long score 0.5 * 0.2 + 0 + 0 = 0.1: the short side's score is 0.9
    assert builtin_score(snapshot(rsi=75.0), Regime.TRENDING_DOWN, 0.2) == pytest.approx(-0.8)


def test_volatile_regime_suppresses_even_a_certain_model() -> None:
    assert builtin_score(snapshot(rsi=20.0), Regime.VOLATILE, 1.0) is None


def test_neutral_inputs_score_zero() -> None:
    assert builtin_score(snapshot(), Regime.RANGING, 0.5) == pytest.approx(0.0)


def test_oversold_rsi_lifts_a_ranging_long() -> None:
    # 0.5 * 0.6 + 0.3 * 0.5 = 0.45, plus 0.2 * 1 when oversold (0.65) but 0.2 * 0.5 at RSI 50 (0.55)
    assert builtin_score(snapshot(rsi=50.0), Regime.RANGING, 0.6) == pytest.approx(0.1)
    assert builtin_score(snapshot(rsi=25.0), Regime.RANGING, 0.6) == pytest.approx(0.3)


def test_up_probability_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="up_probability"):
        builtin_score(snapshot(), Regime.RANGING, 1.2)


# --- entries: a score against min_score ----------------------------------------------------


def test_a_positive_score_is_a_long_whose_side_score_is_one_plus_its_magnitude_halved() -> None:
    signal = entry_signal("BTC/USDT", 0.6, price=100.0, atr=1.0, min_score=0.55)
    assert signal is not None
    assert (signal.symbol, signal.side, signal.price, signal.atr) == ("BTC/USDT", "long", 100.0, 1.0)
    assert signal.score == pytest.approx(0.8)


def test_a_negative_score_is_a_short() -> None:
    signal = entry_signal("ETH/USDT", -0.8, price=100.0, atr=1.0, min_score=0.55)
    assert signal is not None and (signal.side, signal.score) == ("short", pytest.approx(0.9))


@pytest.mark.parametrize(("min_score", "weakest_entry"), [(0.55, 0.1), (0.75, 0.5), (1.0, 1.0)])
def test_a_score_enters_from_twice_min_score_less_one(min_score: float, weakest_entry: float) -> None:
    for score in (weakest_entry, -weakest_entry):
        assert entry_signal("BTC/USDT", score, price=100.0, atr=1.0, min_score=min_score) is not None
    weaker = weakest_entry - 0.01
    for score in (weaker, -weaker):
        assert entry_signal("BTC/USDT", score, price=100.0, atr=1.0, min_score=min_score) is None


def test_a_score_of_zero_is_no_entry() -> None:
    assert entry_signal("BTC/USDT", 0.0, price=100.0, atr=1.0, min_score=0.55) is None


def test_shorts_can_be_refused_for_spot_accounts() -> None:
    assert entry_signal("ETH/USDT", -0.8, price=100.0, atr=1.0, min_score=0.55, allow_short=False) is None


def test_the_built_in_rule_enters_exactly_where_its_side_score_reaches_min_score() -> None:
    # Before it was a plugin the rule compared the long score L (or 1 - L) with min_score: same decisions, same scores.
    rng = np.random.default_rng(7)
    for long_score, min_score in zip(rng.uniform(0.25, 1.0, 20_000), rng.uniform(0.5000001, 1.0, 20_000)):
        signal = entry_signal("BTC/USDT", 2.0 * long_score - 1.0, price=1.0, atr=1.0, min_score=min_score)
        side_score = long_score if long_score > 0.5 else 1.0 - long_score
        assert (signal is not None) == (side_score >= min_score and long_score != 0.5)
        assert signal is None or signal.score == side_score


def test_min_score_must_exceed_one_half() -> None:
    with pytest.raises(ValueError, match="min_score"):
        entry_signal("BTC/USDT", 0.5, price=100.0, atr=1.0, min_score=0.5)


@pytest.mark.parametrize("score", [1.5, -1.01, float("nan")])
def test_a_score_outside_minus_one_to_one_is_refused(score: float) -> None:
    with pytest.raises(ValueError, match="score must be a finite number in \\[-1, 1\\]"):
        entry_signal("BTC/USDT", score, price=100.0, atr=1.0, min_score=0.55)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("score", 1.5, r"score must be a finite number in \[0, 1\], got 1.5"),
        ("price", 0.0, r"price must be a finite number > 0, got 0.0"),
        ("price", float("nan"), r"price must be a finite number > 0, got nan"),
        ("atr", -1.0, r"atr must be a finite number >= 0, got -1.0"),
        ("side", "sideways", r"side must be one of \('long', 'short'\), got 'sideways'"),
    ],
)
def test_signal_names_the_field_it_refuses(field: str, value: object, message: str) -> None:
    fields = {"symbol": "BTC/USDT", "side": "long", "score": 0.7, "price": 100.0, "atr": 2.0}
    with pytest.raises(ValueError, match=message):
        Signal(**{**fields, field: value})
