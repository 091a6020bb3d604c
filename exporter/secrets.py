"""Secret values in configs: ``{env: NAME}``, ``{file: path}`` and ``enc:...`` (Fernet).

A secret is read when the config is loaded, so a missing file or a wrong key stops the load with the path
of the value. Its plain text is kept only inside `SecretValue` and registered with the redactor, so it
never reaches a log line, an error message or a label. The key for ``enc:`` values comes from the
``SITEWATCH_KEY`` environment variable or a key file; no key is ever built into the program.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from cryptography.fernet import Fernet, InvalidToken

from exporter import redaction

KEY_ENV = "SITEWATCH_KEY"
KEY_FILE_ENV = "SITEWATCH_KEY_FILE"
ENC_PREFIX = "enc:"


class SecretError(Exception):
    """A secret could not be read; the message never contains the secret itself."""


class SecretValue:
    """A secret from a config. `str()` and `repr()` never show the plain text; `reveal()` does."""

    def __init__(self, kind: str, reference: str, path: str):
        self.kind = kind  # "env", "file", "enc" or "plain"
        self.reference = reference  # env var name, file path, the enc: token or the plain value
        self.path = path
        self._plain: str | None = reference if kind == "plain" else None
        if self._plain:
            redaction.register(self._plain)

    def resolve(self, base_dir: Path, key_source: "KeySource") -> None:
        if self.kind == "env":
            value = os.environ.get(self.reference)
            if value is None:
                raise SecretError(f"the environment variable {self.reference} is not set")
        elif self.kind == "file":
            file = Path(self.reference).expanduser()
            file = file if file.is_absolute() else base_dir / file
            # A password file saved by Notepad may start with a byte order mark, which must not become part
            # of the password.
            value = read_decoded(file, "the secret file").rstrip("\r\n")
        elif self.kind == "enc":
            value = decrypt(self.reference, key_source.load())
        else:
            value = self.reference
        if not value:
            raise SecretError(f"the secret from {self.describe_source()} is empty")
        redaction.register(value)
        self._plain = value

    def reveal(self) -> str:
        if self._plain is None:
            raise SecretError(f"secret at {self.path} was used before it was resolved")
        return self._plain

    def describe_source(self) -> str:
        if self.kind == "env":
            return f"environment variable {self.reference}"
        if self.kind == "file":
            return f"file {self.reference}"
        return "an enc: value" if self.kind == "enc" else "plain text"

    def __repr__(self) -> str:
        return f"<secret from {self.describe_source()}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and (self.kind, self.reference) == (other.kind, other.reference)

    def __hash__(self) -> int:
        return hash((self.kind, self.reference))


def parse_secret(raw: Any, path: str) -> SecretValue:
    """Reads the written form of a secret; raises ValueError naming the accepted forms."""
    expected = "a secret written as {env: NAME}, {file: path} or enc:... (see 'sitewatch-exporter encrypt')"
    if isinstance(raw, dict) and len(raw) == 1:
        (kind, reference), = raw.items()
        if kind in ("env", "file") and isinstance(reference, str) and reference:
            return SecretValue(kind, reference, path)
        raise ValueError(expected)
    if isinstance(raw, str) and raw:
        if raw.startswith(ENC_PREFIX):
            return SecretValue("enc", raw[len(ENC_PREFIX):], path)
        return SecretValue("plain", raw, path)
    raise ValueError(expected)


def secrets_in(value: Any) -> Iterator[SecretValue]:
    """Every `SecretValue` inside a validated config value (mappings and lists are searched)."""
    if isinstance(value, SecretValue):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from secrets_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from secrets_in(item)


class KeySource:
    """Where the Fernet key for ``enc:`` values comes from: the environment, or a key file."""

    def __init__(self, key_file: str | os.PathLike[str] | None = None,
                 configured_key_file: str | os.PathLike[str] | None = None):
        # Order: a key file named on the command line, $SITEWATCH_KEY, $SITEWATCH_KEY_FILE, the config's key_file.
        self.explicit_key_file = key_file
        self.fallback_key_file = os.environ.get(KEY_FILE_ENV) or configured_key_file
        self._key: bytes | None = None

    def load(self) -> bytes:
        if self._key is not None:
            return self._key
        key_file = self.explicit_key_file
        if not key_file and os.environ.get(KEY_ENV):
            key = os.environ[KEY_ENV].strip().encode()
            origin = f"the environment variable {KEY_ENV}"
        elif key_file or self.fallback_key_file:
            key_file = key_file or self.fallback_key_file
            # A key file saved by Notepad as "Unicode" (UTF-16) or with a byte order mark still holds the key.
            key = read_decoded(Path(key_file), "the key file").strip().encode("ascii", errors="replace")
            origin = f"the key file {key_file}"
        else:
            raise SecretError(
                f"enc: values need a key: set {KEY_ENV}, or {KEY_FILE_ENV}, --key-file or the config's key_file "
                "to a key file made by 'sitewatch-exporter encrypt --new-key FILE'"
            )
        try:
            Fernet(key)
        except ValueError:
            raise SecretError(f"{origin} does not hold a valid key (32 url-safe base64-encoded bytes)") from None
        redaction.register(key.decode())
        self._key = key
        return key


def read_decoded(file: Path, what: str) -> str:
    """The text of a secret's or key's file, decoded as configs are (exporter.config.yamlfile.decode: a byte
    order mark, UTF-16, and advice for cp1251); SecretError naming `what` and the file otherwise."""
    from exporter.config.yamlfile import YamlError, decode  # the config package imports this module

    try:
        return decode(file.read_bytes())
    except OSError as err:
        raise SecretError(f"cannot read {what} {file}: {err.strerror or err}") from None
    except YamlError as err:
        raise SecretError(f"cannot read {what} {file}: {err}") from None


def decrypt(token: str, key: bytes) -> str:
    try:
        return Fernet(key).decrypt(token.encode()).decode("utf-8")
    except (InvalidToken, ValueError):
        raise SecretError("the enc: value cannot be decrypted with this key (wrong key or damaged value)") from None


def encrypt(plain: str, key: bytes) -> str:
    return ENC_PREFIX + Fernet(key).encrypt(plain.encode("utf-8")).decode()


def new_key() -> bytes:
    return Fernet.generate_key()
