"""Intake's box for webhook sources' signing secrets, built once per app."""

from typing import Annotated

from fastapi import Depends, Request

from leadrelay.runtime import get_runtime
from leadrelay.secrets import SecretBox

# Fixed on purpose: changing either makes every stored secret unreadable.
_SALT = b"leadrelay/intake"
_INFO = b"webhook-source-secrets/v1"


def source_box(secret_key: str) -> SecretBox:
    """The box for webhook sources' signing secrets under a LEADRELAY_SECRET_KEY."""
    return SecretBox(secret_key, salt=_SALT, info=_INFO)


def secret_box(request: Request) -> SecretBox:
    """The app's box, built once from its settings."""
    box: SecretBox | None = getattr(request.app.state, "secret_box", None)
    if box is None:
        box = request.app.state.secret_box = source_box(get_runtime(request).settings.secret_key.get_secret_value())
    return box


SecretBoxDep = Annotated[SecretBox, Depends(secret_box)]
