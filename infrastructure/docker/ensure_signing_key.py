"""Make sure the auth service has a JWT signing key before it starts (docker compose one-shot).

In development a missing key is generated once (Ed25519, PEM, PKCS#8) onto a volume, so every
gunicorn worker signs with the same key and tokens survive a restart. In production the key is
never generated here: it must come in as a secret, and this only checks that the service user
can read it and that it is a private key, so that a bad mount fails before the service starts.

Reads AUTH_SIGNING_KEY_FILE and ENVIRONMENT, the same variables as the auth service; runs with
the auth image's Python (it needs `cryptography`, a dependency of pyjwt[crypto]).
"""

import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

# The uid/gid the service images run as (see the Dockerfiles).
SERVICE_UID = 10001
SERVICE_GID = 10001


def check_key(path: Path) -> None:
    serialization.load_pem_private_key(path.read_bytes(), password=None)


def generate_key(path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # The directory too: a service that keeps more keys beside this one can write there.
        os.chown(path.parent, SERVICE_UID, SERVICE_GID)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(pem)
    if os.geteuid() == 0:
        os.chown(partial, SERVICE_UID, SERVICE_GID)
    # Rename last: an interrupted run never leaves a half-written key behind.
    partial.replace(path)


def main() -> int:
    path = Path(os.environ["AUTH_SIGNING_KEY_FILE"])
    production = os.environ.get("ENVIRONMENT") == "production"
    if path.exists():
        try:
            check_key(path)
        except (OSError, ValueError, TypeError) as exc:
            print(f"signing key {path} is not a readable PEM private key: {exc}", file=sys.stderr)
            return 1
        print(f"signing key {path}: present")
        return 0
    if production:
        print(
            f"signing key {path} is missing: in production it must be supplied as a secret",
            file=sys.stderr,
        )
        return 1
    generate_key(path)
    print(f"signing key {path}: generated a development key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
