"""Router refuses the development secret key in production: reps' channel secrets are encrypted with it."""

import pytest
from pydantic import ValidationError

from leadrelay.secrets import DEFAULT_SECRET_KEY
from router.config import RouterSettings
from router.reps.crypto import channel_box


def test_the_development_secret_key_is_refused_in_production_without_showing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        RouterSettings(_env_file=None, environment="production")  # type: ignore[call-arg]
    assert "LEADRELAY_SECRET_KEY must be set in production" in str(refused.value)
    assert DEFAULT_SECRET_KEY not in str(refused.value)
    chosen = "a-real-production-secret-key-0123456789"
    settings = RouterSettings(_env_file=None, environment="production", LEADRELAY_SECRET_KEY=chosen)  # type: ignore[call-arg]
    assert settings.secret_key.get_secret_value() == chosen


def test_a_channel_secret_needs_the_key_it_was_encrypted_with() -> None:
    token = channel_box("first-secret-key-0123456789").encrypt("whsec_abc")
    assert channel_box("first-secret-key-0123456789").decrypt(token) == "whsec_abc"
    assert channel_box("another-secret-key-0123456789").decrypt(token) is None
