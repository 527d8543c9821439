"""Signing secrets encrypted at rest with a key derived from LEADRELAY_SECRET_KEY."""

import base64
from typing import Annotated

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, Request

from leadrelay.runtime import get_runtime

# Fixed on purpose: changing either makes every stored secret unreadable.
_SALT = b"leadrelay/intake"
_INFO = b"webhook-source-secrets/v1"


class SecretBox:
    """Encrypts and decrypts signing secrets (Fernet: AES-128-CBC with HMAC-SHA256)."""

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, secret: str) -> str:
        """The secret as an opaque token."""
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        """The secret, or None when the token was made with another key (LEADRELAY_SECRET_KEY changed)."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None


def secret_box(request: Request) -> SecretBox:
    """The app's box, built once from its settings."""
    box: SecretBox | None = getattr(request.app.state, "secret_box", None)
    if box is None:
        box = request.app.state.secret_box = SecretBox(get_runtime(request).settings.secret_key.get_secret_value())
    return box


SecretBoxDep = Annotated[SecretBox, Depends(secret_box)]
