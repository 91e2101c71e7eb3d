"""Password hashing (argon2id) and the minimum strength policy."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from fleet_common.errors import UnprocessableError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
MIN_DISTINCT_CHARACTERS = 5
# The most common passwords of at least MIN_PASSWORD_LENGTH characters in public breach lists.
COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "0123456789",
        "12345678910",
        "123456789a",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "password1",
        "password12",
        "password123",
        "password1234",
        "qwertyuiop",
        "qwerty1234",
        "qwerty12345",
        "iloveyou12",
        "abcdefghij",
        "abcd123456",
        "letmein123",
        "welcome123",
        "administrator",
        "fleettracker",
        "fleet-tracker",
        "changeme123",
    }
)

# argon2-cffi's defaults follow RFC 9106's second recommended option (argon2id).
_hasher = PasswordHasher()


def check_password_policy(password: str, *, email: str = "") -> None:
    """Raise a 422 naming the rule a password breaks."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UnprocessableError(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters long", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UnprocessableError(
            f"password must be at most {MAX_PASSWORD_LENGTH} characters long", field="password"
        )
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        raise UnprocessableError(
            f"password must contain at least {MIN_DISTINCT_CHARACTERS} different characters",
            field="password",
        )
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS:
        raise UnprocessableError("password is too common", field="password")
    local_part = email.partition("@")[0].lower()
    if len(local_part) >= 4 and local_part in lowered:
        raise UnprocessableError("password must not contain the email address", field="password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


# Verified against when the account does not exist, so that an unknown email takes as long
# as a wrong password and cannot be told apart by timing.
DUMMY_HASH = _hasher.hash("not-a-real-password-for-timing")
