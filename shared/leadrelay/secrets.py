"""Secrets encrypted at rest (Fernet) with a key derived from LEADRELAY_SECRET_KEY, one derivation per purpose."""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    """Encrypts and decrypts secrets (Fernet: AES-128-CBC with HMAC-SHA256).

    `salt` and `info` name the purpose; they are fixed per purpose forever, since changing either
    makes every stored secret of that purpose unreadable.
    """

    def __init__(self, secret_key: str, *, salt: bytes, info: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret_key.encode())
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


# The development default of LEADRELAY_SECRET_KEY; a service refuses it when ENVIRONMENT=production.
DEFAULT_SECRET_KEY = "lr_dev_secret_key_insecure_change_me"
