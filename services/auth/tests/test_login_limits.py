"""Brute force: failed logins are counted per account and per address; 429 with Retry-After."""

import ipaddress
import itertools
import uuid

from .conftest import PASSWORD, is_problem

# Each call a new address: failures counted against one test's address must not count
# against another's (random picks from 250 collided now and then).
_ADDRESSES = (str(ipaddress.ip_address("203.0.113.0") + n) for n in itertools.count(1))


def address() -> str:
    return next(_ADDRESSES)


async def login(client, email, password, ip):
    return await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": ip},
    )


async def test_account_lockout_and_reset_on_success(client, make_org):
    org = make_org()
    email = org.emails["viewer"]
    # Four failures, then a success: the counter starts again.
    for _ in range(4):
        assert (await login(client, email, "Wrong-Passw0rd!", address())).status_code == 401
    assert (await login(client, email, PASSWORD, address())).status_code == 200
    for _ in range(4):
        assert (await login(client, email, "Wrong-Passw0rd!", address())).status_code == 401
    assert (await login(client, email, PASSWORD, address())).status_code == 200

    # Five failures in a row lock the account, whatever the address and even for the
    # right password, until the window ends.
    for _ in range(5):
        assert (await login(client, email, "Wrong-Passw0rd!", address())).status_code == 401
    locked = await login(client, email, PASSWORD, address())
    assert is_problem(locked, 429)
    assert 1 <= int(locked.headers["retry-after"]) <= 900
    # Another account is unaffected.
    assert (await login(client, org.emails["admin"], PASSWORD, address())).status_code == 200


async def test_address_limit(client, make_org):
    org = make_org()
    ip = address()
    for _ in range(50):
        email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
        assert (await login(client, email, "Wrong-Passw0rd!", ip)).status_code == 401
    blocked = await login(client, org.emails["admin"], PASSWORD, ip)
    assert is_problem(blocked, 429)
    assert int(blocked.headers["retry-after"]) >= 1
    # The same account from another address is fine.
    assert (await login(client, org.emails["admin"], PASSWORD, address())).status_code == 200
