"""Secrets never reach a log: registered values and credential parameters are redacted at the handler."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from crypto_bot import redaction

API_KEY = "k3y-0f-the-test-account"
SECRET = "s3cr3t-value-that-signs"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """A handler on a fresh logger tree, with the redacting filter installed as the CLI does."""
    stream = io.StringIO()
    logger = logging.getLogger("redaction-test")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    redaction.install(logger)
    redaction.register_secret(API_KEY)
    redaction.register_secret(SECRET)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def test_a_registered_secret_is_redacted_from_message_and_arguments(output: io.StringIO) -> None:
    logging.getLogger("redaction-test.exchange").warning("request with key %s failed", API_KEY)
    assert API_KEY not in output.getvalue()
    assert "request with key *** failed" in output.getvalue()


def test_credential_query_parameters_are_redacted(output: io.StringIO) -> None:
    url = "https://api.example.com/api/v3/account?timestamp=1&recvWindow=5000&signature=abcdef0123456789&apiKey=XYZ123"
    logging.getLogger("redaction-test").error("GET %s -> 401", url)
    text = output.getvalue()
    assert "abcdef0123456789" not in text and "XYZ123" not in text
    assert "signature=***" in text and "apiKey=***" in text and "recvWindow=5000" in text


def test_echoed_json_credentials_are_redacted(output: io.StringIO) -> None:
    logging.getLogger("redaction-test").error('exchange said {"code": -2015, "apiKey": "ABCD9876", "msg": "invalid"}')
    assert "ABCD9876" not in output.getvalue()


def test_exception_text_and_its_chain_are_redacted(output: io.StringIO) -> None:
    try:
        try:
            raise ConnectionError(f"GET /account?signature={SECRET}")
        except ConnectionError as error:
            raise RuntimeError(f"authentication failed for {API_KEY}") from error
    except RuntimeError:
        logging.getLogger("redaction-test").exception("fetch failed")
    text = output.getvalue()
    assert API_KEY not in text and SECRET not in text
    assert "Traceback" in text and "authentication failed for ***" in text


def test_records_are_never_dropped(output: io.StringIO) -> None:
    logging.getLogger("redaction-test").info("plain message %d", 7)
    assert "plain message 7" in output.getvalue()


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 4 characters"):
        redaction.register_secret("abc")
