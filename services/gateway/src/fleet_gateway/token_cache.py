"""Verified access tokens remembered until they expire, so a client's next calls skip the
signature check.

A client sends the same access token on every call for its ~15 minutes of life; checking
its signature each time is the largest fixed cost of a forwarded request after the network.
Only tokens that passed `TokenVerifier.verify` are remembered (a failure is never cached, so
forged tokens cost a full check every time, as before), keyed by the token's SHA-256 rather
than the token itself, and never past their own `exp` (the verifier's 5 s leeway is not
extended: near expiry the verifier decides again). The cache is a bounded LRU.

Revocation is checked on every call all the same (`TokenVerifier.verify`, from its own
one-second cache): only the signature check is skipped.

What it does not do: notice that a key was withdrawn from the JWKS. That changes nothing in
practice: the JWKS cache itself keeps known keys for up to 10 minutes, tokens live 15, and
every service verifies the token again on its own.
"""

import hashlib
import time
from collections import OrderedDict

from fleet_common.auth import JWKSCache, Principal, RevocationList, TokenVerifier

DEFAULT_MAX_ENTRIES = 10_000


class CachingTokenVerifier(TokenVerifier):
    """A `TokenVerifier` with a bounded LRU of verified tokens."""

    def __init__(
        self,
        jwks: JWKSCache,
        issuer: str,
        revocations: RevocationList | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        super().__init__(jwks, issuer, revocations)
        self.max_entries = max_entries
        self._verified: OrderedDict[bytes, Principal] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verified)

    async def decode(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        principal = self._verified.get(key)
        if principal is not None:
            if principal.expires_at > time.time():
                self._verified.move_to_end(key)
                return principal
            del self._verified[key]
        principal = await super().decode(token)
        if principal.expires_at > time.time():  # not when only the leeway let it pass
            self._verified[key] = principal
            if len(self._verified) > self.max_entries:
                self._verified.popitem(last=False)
        return principal
