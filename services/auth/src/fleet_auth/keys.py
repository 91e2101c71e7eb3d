"""Token signing keys: loading, development generation, `kid` and the public JWKS.

A key's `kid` is its RFC 7638 thumbprint, so the same key always has the same id. The
current key signs; the previous one is still published so tokens signed before a rotation
stay valid until they expire.
"""

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from fleet_auth.config import Settings
from fleet_common.logging import get_logger

log = get_logger(__name__)

GENERATED_KEY_NAME = "signing-key.pem"
# Written next to a generated key: production refuses any key carrying it.
GENERATED_MARKER_SUFFIX = ".generated"
MIN_RSA_BITS = 2048

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


class KeyConfigurationError(RuntimeError):
    """The signing key configuration cannot be used; the message says why."""


@dataclass(frozen=True)
class SigningKey:
    private_key: PrivateKey
    algorithm: str
    kid: str
    public_jwk: dict[str, Any] = field(repr=False)
    generated: bool = False

    @classmethod
    def from_private_key(cls, private_key: PrivateKey, *, generated: bool = False) -> "SigningKey":
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            algorithm = "EdDSA"
            jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
            thumb_members = {k: jwk[k] for k in ("crv", "kty", "x")}
        elif isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < MIN_RSA_BITS:
                raise KeyConfigurationError(
                    f"the RSA signing key has {private_key.key_size} bits; at least "
                    f"{MIN_RSA_BITS} are required"
                )
            algorithm = "RS256"
            jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
            thumb_members = {k: jwk[k] for k in ("e", "kty", "n")}
        else:
            raise KeyConfigurationError("the signing key must be an Ed25519 or RSA private key")
        canonical = json.dumps(thumb_members, separators=(",", ":"), sort_keys=True).encode()
        kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
        public_jwk = {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}
        return cls(private_key, algorithm, kid, public_jwk, generated)

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls.from_private_key(ed25519.Ed25519PrivateKey.generate(), generated=True)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class KeyRing:
    current: SigningKey
    previous: SigningKey | None = None

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        keys = [self.current.public_jwk]
        if self.previous is not None and self.previous.kid != self.current.kid:
            keys.append(self.previous.public_jwk)
        return {"keys": keys}


def _read_key(path: Path, what: str) -> SigningKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyConfigurationError(f"{what} {path} is missing") from exc
    except OSError as exc:
        raise KeyConfigurationError(f"{what} {path} cannot be read: {exc.strerror}") from exc
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyConfigurationError(f"{what} {path} is not an unencrypted PEM private key") from exc
    generated = Path(f"{path}{GENERATED_MARKER_SUFFIX}").exists()
    return SigningKey.from_private_key(private_key, generated=generated)  # type: ignore[arg-type]


def _generated_key(keys_dir: Path | None) -> SigningKey:
    """The development key: kept in `keys_dir` across restarts, or in memory without one."""
    if keys_dir is None:
        log.warning("no signing key configured; using an in-memory key for this process")
        return SigningKey.generate()
    path = keys_dir / GENERATED_KEY_NAME
    if path.exists():
        return _read_key(path, "the generated signing key")
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    # Created with 0600 from the start: the private key is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_pem())
    Path(f"{path}{GENERATED_MARKER_SUFFIX}").write_text(
        "This signing key was generated for local development; production refuses it.\n"
    )
    log.info("generated a development signing key", path=str(path), kid=key.kid)
    return key


def load_key_ring(settings: Settings) -> KeyRing:
    """The configured keys; in production a missing or generated key stops the service."""
    production = settings.environment == "production"
    if settings.signing_key_file is None:
        if production:
            raise KeyConfigurationError(
                "AUTH_SIGNING_KEY_FILE is missing: production needs a signing key from "
                "configuration (a file or a mounted secret), never a generated one"
            )
        current = _generated_key(settings.keys_dir)
    else:
        current = _read_key(settings.signing_key_file, "AUTH_SIGNING_KEY_FILE")
        if production and current.generated:
            raise KeyConfigurationError(
                f"AUTH_SIGNING_KEY_FILE {settings.signing_key_file} is a generated "
                "development key; production needs its own key"
            )
    previous = None
    if settings.previous_signing_key_file is not None:
        previous = _read_key(settings.previous_signing_key_file, "AUTH_PREVIOUS_SIGNING_KEY_FILE")
    return KeyRing(current, previous)
