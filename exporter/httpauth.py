"""HTTP basic auth against bcrypt hashes, cheap enough to ask of every request.

A bcrypt check costs tens of milliseconds by design (cost 10: about 60 ms), far more than a scrape or a
webhook may. So every outcome is remembered in a `Verdicts` cache keyed by the user, the hash in force
and the password: a second request with the same credentials costs one HMAC (about a microsecond), and a
changed password or a changed web config file changes the key, so nothing stale is believed. The key is an
HMAC under a random key of this process, so the cache holds no password, not even one fast to guess from.

A user nobody configured is checked against a dummy hash of the usual cost, so an unknown name takes as
long as a wrong password and names cannot be told apart by timing. bcrypt checks run one at a time: a flood
of wrong passwords costs one core, not all of them. Two things keep such a flood from locking out the right
user: accepted credentials are remembered apart from refused ones, so no number of wrong passwords pushes
them out; and while `MOST_WAITING` checks already wait their turn, credentials not seen before are refused
at once (BUSY) instead of queueing behind the flood for seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from typing import Mapping

import bcrypt

ACCEPTED = "accepted"
MISSING = "missing"  # no Authorization header
MALFORMED = "malformed"  # not Basic, or not base64 of user:password
UNKNOWN_USER = "unknown_user"
WRONG_PASSWORD = "wrong_password"
BUSY = "busy"  # too many password checks already wait: new credentials are refused unchecked
REFUSALS = (MISSING, MALFORMED, UNKNOWN_USER, WRONG_PASSWORD, BUSY)

BCRYPT_BYTES = 72  # bcrypt reads no further; longer passwords are cut here, as htpasswd and Go did
MOST_HEADER_CHARS = 4096  # base64 of credentials far longer than anyone types
MOST_REMEMBERED = 1024  # of each kind: accepted, refused
# Checks waiting for the one running: about 60 ms each at cost 10, so the last waits about half a second.
MOST_WAITING = 8

_dummy_hashes: dict[int, bytes] = {}
_dummy_lock = threading.Lock()


def dummy_hash(cost: int) -> bytes:
    """A hash of a random password at `cost`, made once per cost (it takes as long as a check)."""
    with _dummy_lock:
        if cost not in _dummy_hashes:
            _dummy_hashes[cost] = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        return _dummy_hashes[cost]


@dataclass(frozen=True)
class Credentials:
    user: str | None  # None: not UTF-8, so no configured user
    password: bytes


def parse_basic(header: str) -> Credentials | str:
    """The credentials of an Authorization header, or the refusal (MISSING, MALFORMED) it already is."""
    if not header.strip():
        return MISSING
    scheme, _, payload = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(payload) > MOST_HEADER_CHARS:
        return MALFORMED
    try:
        decoded = base64.b64decode(payload.strip(), validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        return MALFORMED
    user, colon, password = decoded.partition(b":")
    if not colon:
        return MALFORMED
    try:
        name: str | None = user.decode("utf-8")
    except UnicodeDecodeError:
        name = None
    return Credentials(name, password[:BCRYPT_BYTES])


class Verdicts:
    """Remembered outcomes of bcrypt checks, shared by every config a program reloads; thread-safe."""

    def __init__(self, size: int = MOST_REMEMBERED, most_waiting: int = MOST_WAITING):
        self._key = os.urandom(32)
        self._size = size
        self._accepted: dict[bytes, str] = {}
        self._refused: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self.bcrypt_lock = threading.Lock()  # one bcrypt check at a time
        self._most_waiting = most_waiting
        self._waiting = 0

    def queue(self) -> bool:
        """Takes a place in the line for bcrypt; False when the line is full (the caller refuses BUSY)."""
        with self._lock:
            if self._waiting >= self._most_waiting:
                return False
            self._waiting += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._waiting -= 1

    def key(self, user: str | None, digest: bytes, password: bytes) -> bytes:
        name = (user or "").encode("utf-8", "surrogatepass")
        material = b"".join(len(part).to_bytes(4, "big") + part for part in (name, digest, password))
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def get(self, key: bytes) -> str | None:
        return self._accepted.get(key) or self._refused.get(key)

    def put(self, key: bytes, verdict: str) -> None:
        known = self._accepted if verdict == ACCEPTED else self._refused
        with self._lock:
            if len(known) >= self._size and key not in known:
                del known[next(iter(known))]  # the oldest
            known[key] = verdict


class BasicAuth:
    """The users of one web config. `quick()` answers from the cache; `check()` runs bcrypt when needed."""

    def __init__(self, users: Mapping[str, bytes], verdicts: Verdicts, cost: int):
        self.users = dict(users)
        self.verdicts = verdicts
        self._dummy = dummy_hash(cost) if self.users else b""

    @property
    def required(self) -> bool:
        return bool(self.users)

    def quick(self, header: str) -> str | None:
        """ACCEPTED or a refusal when known without bcrypt; None when only `check()` can tell."""
        if not self.users:
            return ACCEPTED
        parsed = parse_basic(header)
        if isinstance(parsed, str):
            return parsed
        return self.verdicts.get(self._key(parsed))

    def check(self, header: str) -> str:
        """ACCEPTED or the refusal; may take a bcrypt check's time (tens of milliseconds)."""
        if not self.users:
            return ACCEPTED
        parsed = parse_basic(header)
        if isinstance(parsed, str):
            return parsed
        digest = self._digest(parsed)
        key = self.verdicts.key(parsed.user, digest, parsed.password)
        known = self.verdicts.get(key)
        if known is not None:
            return known
        if not self.verdicts.queue():
            return BUSY
        try:
            with self.verdicts.bcrypt_lock:
                known = self.verdicts.get(key)  # another thread may have checked the same while this one waited
                if known is not None:
                    return known
                try:
                    matches = bcrypt.checkpw(parsed.password, digest)
                except ValueError:  # a hash the library refuses: the config's checks should have caught it
                    matches = False
        finally:
            self.verdicts.leave()
        if parsed.user not in self.users:
            verdict = UNKNOWN_USER
        else:
            verdict = ACCEPTED if matches else WRONG_PASSWORD
        self.verdicts.put(key, verdict)
        return verdict

    def _digest(self, credentials: Credentials) -> bytes:
        return self.users.get(credentials.user, self._dummy) if credentials.user is not None else self._dummy

    def _key(self, credentials: Credentials) -> bytes:
        return self.verdicts.key(credentials.user, self._digest(credentials), credentials.password)
