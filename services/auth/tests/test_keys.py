"""Signing keys: development generation, rotation, and production's refusals."""

import os
import subprocess
import sys

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from fleet_auth.config import Settings
from fleet_auth.keys import KeyConfigurationError, SigningKey, load_key_ring

PRODUCTION = {"environment": "production", "internal_token": "x" * 40}


def write_key(path, key=None):
    path.write_bytes(
        SigningKey.from_private_key(key or ed25519.Ed25519PrivateKey.generate()).private_pem()
    )
    return path


def test_development_key_is_generated_once_and_kept(tmp_path):
    settings = Settings(keys_dir=tmp_path / "keys")
    first = load_key_ring(settings)
    again = load_key_ring(settings)
    assert first.current.kid == again.current.kid
    assert (tmp_path / "keys" / "signing-key.pem").stat().st_mode & 0o077 == 0
    assert first.current.generated


def test_jwks_publishes_current_and_previous(tmp_path):
    current = write_key(tmp_path / "current.pem")
    previous = write_key(tmp_path / "previous.pem")
    ring = load_key_ring(Settings(signing_key_file=current, previous_signing_key_file=previous))
    keys = ring.jwks()["keys"]
    assert [k["kid"] for k in keys] == [ring.current.kid, ring.previous.kid]
    for jwk in keys:
        assert (jwk["alg"], jwk["use"], jwk["kty"], jwk["crv"]) == (
            "EdDSA",
            "sig",
            "OKP",
            "Ed25519",
        )
        assert "d" not in jwk
    # A token signed by the previous key still verifies against the published set.
    token = jwt.encode(
        {"sub": "x"},
        ring.previous.private_key,
        algorithm="EdDSA",
        headers={"kid": ring.previous.kid},
    )
    published = jwt.PyJWK.from_dict(keys[1])
    assert jwt.decode(token, published.key, algorithms=["EdDSA"])["sub"] == "x"


def test_rsa_keys_are_accepted_but_not_small_ones(tmp_path):
    good = write_key(tmp_path / "rsa.pem", rsa.generate_private_key(65537, 2048))
    assert load_key_ring(Settings(signing_key_file=good)).current.algorithm == "RS256"
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the point of the test
    with pytest.raises(KeyConfigurationError, match="at least 2048"):
        SigningKey.from_private_key(weak)


def test_production_refuses_a_missing_key_setting():
    with pytest.raises(KeyConfigurationError, match="AUTH_SIGNING_KEY_FILE is missing"):
        load_key_ring(Settings(**PRODUCTION))


def test_production_refuses_a_missing_key_file(tmp_path):
    with pytest.raises(KeyConfigurationError, match="is missing"):
        load_key_ring(Settings(**PRODUCTION, signing_key_file=tmp_path / "nope.pem"))


def test_production_refuses_a_generated_key(tmp_path):
    load_key_ring(Settings(keys_dir=tmp_path))
    generated = tmp_path / "signing-key.pem"
    with pytest.raises(KeyConfigurationError, match="generated development key"):
        load_key_ring(Settings(**PRODUCTION, signing_key_file=generated))


def test_production_refuses_a_non_key(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyConfigurationError, match="not an unencrypted PEM private key"):
        load_key_ring(Settings(**PRODUCTION, signing_key_file=junk))


def test_production_accepts_its_own_key(tmp_path):
    key = write_key(tmp_path / "prod.pem")
    ring = load_key_ring(Settings(**PRODUCTION, signing_key_file=key))
    assert not ring.current.generated


def test_production_process_refuses_to_start_and_says_why(tmp_path):
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "INTERNAL_SERVICE_TOKEN": "y" * 40,
        "AUTH_KEYS_DIR": str(tmp_path),
    }
    env.pop("AUTH_SIGNING_KEY_FILE", None)
    result = subprocess.run(
        [sys.executable, "-c", "from fleet_auth.main import create_app; create_app()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "AUTH_SIGNING_KEY_FILE is missing" in result.stderr


def test_production_refuses_the_firebase_emulator(tmp_path):
    from fleet_auth.main import create_app

    key = write_key(tmp_path / "prod.pem")
    settings = Settings(
        **PRODUCTION, signing_key_file=key, firebase_auth_emulator_host="127.0.0.1:9099"
    )
    with pytest.raises(RuntimeError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        create_app(settings)


async def test_running_service_publishes_its_key(auth_service):
    async with httpx.AsyncClient() as client:
        response = await client.get(auth_service.jwks_url)
    assert response.status_code == 200
    assert response.json()["keys"][0]["use"] == "sig"
