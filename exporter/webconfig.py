"""The web config file (``--web.config.file``): TLS and basic auth for a program's HTTP endpoints.

The format is that of Prometheus' exporter-toolkit, which node_exporter, blackbox_exporter and the
Pushgateway read, so a web-config.yml written for them works here: `tls_server_config`,
`http_server_config` and `basic_auth_users`, with the same field names and defaults. Relative paths are
read from the web config file's folder. What Python's ssl module cannot do is refused with a message that
says so, never quietly ignored:

- `client_auth_type: RequireAnyClientCert` (and its old name RequireClientCert): Python checks every client
  certificate it asks for, so it cannot demand one without checking it. `RequestClientCert` asks for a
  certificate and checks nothing, which lets in exactly whom `NoClientCert` lets in: it is read as that.
- `curve_preferences` of more than one curve: Python sets one curve, not a preference list.
- `cert` and `key` written inline (Python loads a certificate and key from files only) and a non-zero
  `rate_limit`.

`http_server_config.http2` is accepted and has no effect: the servers speak HTTP/1.1. TLS 1.3 names in
`cipher_suites` are accepted and, as in Go, change nothing (TLS 1.3 suites are not configurable).

Everything is checked when the file is read, the certificate and key included (`load_web_config` builds
the SSLContext), so a file that is accepted can be served. A password written where a bcrypt hash belongs
is refused without being repeated in the message.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporter import schema as s
from exporter.config import ConfigError
from exporter.config.loader import invalid_config
from exporter.config.yamlfile import YamlError, parse_yaml, read_text

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert", "RequireClientCert")
_VERIFY_MODES = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_NONE,
                 "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# Go's names of the suites exporter-toolkit accepts (crypto/tls CipherSuites()) and OpenSSL's for each.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# The headers exporter-toolkit lets a web config add, and the values it allows where it restricts them.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
HASH_TEXT = ("a bcrypt hash: $2y$, the cost, $ and 53 characters (`sitewatch-exporter hash-password` makes one; "
             "the value written is not shown, as it may be a password)")
USER_TEXT = "a user name: text without ':' or control characters"


@dataclass(frozen=True)
class TlsSettings:
    context: ssl.SSLContext
    client_auth: str  # the client_auth_type in force (RequestClientCert is read as NoClientCert)
    allowed_sans: frozenset[str]  # empty: any client the context lets in
    not_after: float | None  # when the server certificate expires (unix time)

    def peer_allowed(self, peer: dict[str, Any] | None) -> bool:
        """Whether a verified client certificate (`SSLSocket.getpeercert()`) names an allowed SAN."""
        if not self.allowed_sans:
            return True
        for kind, value in (peer or {}).get("subjectAltName", ()):
            if _san_text(kind, value) in self.allowed_sans:
                return True
        return False


@dataclass(frozen=True)
class WebConfig:
    source: Path
    tls: TlsSettings | None
    headers: tuple[tuple[str, str], ...]  # added to every answer
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash; empty: no basic auth
    files: tuple[Path, ...] = ()  # what it was read from: itself, then the certificate, key and CA files

    @property
    def usual_cost(self) -> int:
        """The bcrypt cost most of the users' hashes have (10 without users)."""
        costs = Counter(int(BCRYPT_HASH.fullmatch(digest.decode()).group(1)) for digest in self.users.values())
        return costs.most_common(1)[0][0] if costs else 10

    def describe(self) -> str:
        tls = "off" if self.tls is None else f"on, client certificates {self.tls.client_auth}"
        return f"TLS {tls}; basic auth " + (f"for {len(self.users)} user(s)" if self.users else "off")


def load_web_config(path: str | Path) -> WebConfig:
    """Reads and checks the web config at `path`; raises ConfigError naming the file, line, path and need."""
    file = Path(path)
    try:
        text = read_text(file)
        raw = parse_yaml(text)
    except YamlError as err:
        raise ConfigError(file, str(err)) from None
    if not isinstance(raw, dict) and raw is not None:
        # Not shown: a password file or a key given here by mistake would be printed and logged.
        raise ConfigError(file, "expected a mapping with tls_server_config, http_server_config or "
                                f"basic_auth_users, got {_kind(raw)} (the value is not shown: is this the web config?)")
    folder = s.config_folder.set(file.parent)
    try:
        return _build(file, _TOP(raw, ""))
    except s.Invalid as err:
        raise invalid_config(file, err, text) from None
    finally:
        s.config_folder.reset(folder)


# --- validators ------------------------------------------------------------------------------------------


def _refused(expected: str) -> s.Validator:
    """A key exporter-toolkit knows and sitewatch cannot honour: an error saying what to write instead.
    The value is never shown (`key` holds a private key)."""

    def check(value: Any, path: str) -> Any:
        raise s.Invalid(path, expected)

    return check


def _header_value(value: Any, path: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # `X-XSS-Protection: 1`, in exporter-toolkit's own example: Go reads it as text
    if not isinstance(value, str) or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise s.Invalid(path, "a header value: text on one line", value)
    return value.strip()


def _headers(raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise s.Invalid(path, "a mapping of header names to values", raw)
    chosen = []
    for name, value in raw.items():
        where = s.join(path, str(name))
        if name not in HEADERS:
            raise s.Invalid(where, "one of the headers " + ", ".join(HEADERS), name)
        text = _header_value(value, where) if value is not None else ""
        allowed = HEADERS[name]
        if text and allowed and text not in allowed:
            raise s.Invalid(where, "one of " + ", ".join(allowed), value)
        if text:  # blank leaves the header out, as in exporter-toolkit
            chosen.append((name, text))
    return tuple(chosen)


def _kind(value: Any) -> str:
    return {str: "text", list: "a list"}.get(type(value), type(value).__name__)


def _users(raw: Any, path: str) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        # Not shown: someone may have written "user: password" on the basic_auth_users line itself.
        raise s.Invalid(path, "a mapping of user names to bcrypt hashes (the value written is not shown)")
    users = {}
    for name, digest in raw.items():
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            name = str(name)  # YAML reads `1234:` as a number; Go's reader, as exporter-toolkit's, as text
        where = s.join(path, str(name))
        if (not isinstance(name, str) or not name or ":" in name
                or any(ord(char) < 32 or ord(char) == 127 for char in name)):
            # Not shown: "user:password" written as the name would be printed and logged.
            raise s.Invalid(where.split(":")[0] if isinstance(name, str) else path, USER_TEXT)
        users[name] = password_hash(digest, where)
    return users


def password_hash(value: Any, path: str) -> bytes:
    """A bcrypt hash as bcrypt.checkpw takes it; never repeats the value in an error."""
    match = BCRYPT_HASH.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise s.Invalid(path, HASH_TEXT)
    cost = int(match.group(1))
    if not 4 <= cost <= 31:
        raise s.Invalid(path, f"a bcrypt hash of cost 4 to 31 (this one has {cost})")
    digest = value.encode("ascii")
    try:
        # The library's own reading of the salt, at the cheapest cost: a few milliseconds, not a real check.
        bcrypt.checkpw(b"", digest[:4] + b"04" + digest[6:])
    except ValueError:
        raise s.Invalid(path, HASH_TEXT) from None
    return digest


def _rate_limit(raw: Any, path: str) -> None:
    fields = s.struct({"interval": s.Field(s.duration(minimum=0)), "burst": s.Field(s.integer(minimum=0))})(raw, path)
    if fields["interval"]:
        raise s.Invalid(s.join(path, "interval"), "0 or no rate_limit: sitewatch does not limit the request rate "
                                                  "(a reverse proxy such as nginx can)")


_TLS = s.struct({
    "cert_file": s.Field(s.existing_file("a certificate file (PEM)")),
    "key_file": s.Field(s.existing_file("a private key file (PEM)")),
    "cert": s.Field(_refused("no inline certificate: put it in a file and name that file in cert_file")),
    "key": s.Field(_refused("no inline key: put it in a file readable only by the service and name that "
                            "file in key_file")),
    "client_auth_type": s.Field(s.choice(*CLIENT_AUTH_TYPES)),
    "client_ca_file": s.Field(s.existing_file("a CA certificate file (PEM)")),
    "client_ca": s.Field(s.string(what="CA certificates as PEM text")),
    "client_allowed_sans": s.Field(s.list_of(s.string(), min_items=1)),
    "min_version": s.Field(s.choice(*TLS_VERSIONS), default="TLS12"),
    "max_version": s.Field(s.choice(*TLS_VERSIONS), default="TLS13"),
    "cipher_suites": s.Field(s.list_of(s.choice(*CIPHER_SUITES, *TLS13_SUITES))),
    "prefer_server_cipher_suites": s.Field(s.boolean(), default=True),
    "curve_preferences": s.Field(s.list_of(s.choice(*CURVES))),
})



def _tls_section(raw: Any, path: str) -> dict[str, Any] | None:
    """None for an empty section (TLS off, as no section at all); any key in it turns TLS on."""
    return None if raw == {} else _TLS(raw, path)


_TOP = s.struct({
    "tls_server_config": s.Field(_tls_section),
    "http_server_config": s.Field(s.struct({
        "http2": s.Field(s.boolean(), default=True),  # accepted, no effect: the servers speak HTTP/1.1
        "headers": s.Field(_headers, default=()),
    })),
    "basic_auth_users": s.Field(_users, default={}),
    "rate_limit": s.Field(_rate_limit),
}, what="a mapping with tls_server_config, http_server_config or basic_auth_users")


# --- building --------------------------------------------------------------------------------------------


def _build(file: Path, top: dict[str, Any]) -> WebConfig:
    files = [file]
    tls = None
    if top["tls_server_config"] is not None:
        tls = _tls(top["tls_server_config"], files)
    http = top["http_server_config"] or {"headers": ()}
    return WebConfig(file, tls, tuple(http["headers"]), top["basic_auth_users"], tuple(files))


def _tls(tls: dict[str, Any], files: list[Path]) -> TlsSettings:
    where = "tls_server_config"
    for key in ("cert_file", "key_file"):
        if tls[key] is None:  # exporter-toolkit would serve plain HTTP for some such sections: say so instead
            raise s.Invalid(f"{where}.{key}", "a value: tls_server_config turns TLS on, which needs both "
                                              "cert_file and key_file")
    auth = tls["client_auth_type"] or "NoClientCert"
    has_ca = tls["client_ca_file"] is not None or tls["client_ca"] is not None
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        raise s.Invalid(f"{where}.client_auth_type", "NoClientCert, VerifyClientCertIfGiven or "
                        "RequireAndVerifyClientCert: Python checks every client certificate it asks for, so it "
                        "cannot demand one without checking it (and one nobody checks proves nothing)", auth)
    if tls["client_ca_file"] is not None and tls["client_ca"] is not None:
        raise s.Invalid(f"{where}.client_ca", "either client_ca_file or client_ca, not both")
    if _VERIFY_MODES[auth] == ssl.CERT_NONE and has_ca:
        raise s.Invalid(f"{where}.client_auth_type", "VerifyClientCertIfGiven or RequireAndVerifyClientCert: "
                        "a client CA is given, but no client certificate is checked", auth)
    if _VERIFY_MODES[auth] != ssl.CERT_NONE and not has_ca:
        raise s.Invalid(f"{where}.client_auth_type", "client_ca_file (or client_ca) beside it: this type checks "
                                                     "client certificates against that CA", auth)
    if tls["client_allowed_sans"] and _VERIFY_MODES[auth] == ssl.CERT_NONE:
        raise s.Invalid(f"{where}.client_allowed_sans", "client_auth_type VerifyClientCertIfGiven or "
                        "RequireAndVerifyClientCert: SANs mean something only in a checked certificate")
    lowest, highest = TLS_VERSIONS[tls["min_version"]], TLS_VERSIONS[tls["max_version"]]
    if lowest > highest:
        raise s.Invalid(f"{where}.min_version", f"a version no higher than max_version ({tls['max_version']})",
                        tls["min_version"])
    curves = tls["curve_preferences"] or []
    if len(curves) > 1:
        raise s.Invalid(f"{where}.curve_preferences", "one curve: Python's ssl sets a single curve, not a "
                        "preference list", curves)

    cert_file, key_file = Path(tls["cert_file"]), Path(tls["key_file"])
    not_after = _certificate_end(cert_file, f"{where}.cert_file")
    _check_key(key_file, f"{where}.key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated; a config may still ask for them
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version, context.maximum_version = lowest, highest
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except (ssl.SSLError, _Encrypted) as err:
        raise s.Invalid(f"{where}.key_file", f"the private key of the certificate in cert_file ({cert_file})",
                        hint=_ssl_reason(err)) from None
    files += [cert_file, key_file]
    context.verify_mode = _VERIFY_MODES[auth]
    if tls["client_ca_file"] is not None:
        files.append(Path(tls["client_ca_file"]))
        _load_ca(context, f"{where}.client_ca_file", cafile=tls["client_ca_file"])
    elif tls["client_ca"] is not None:
        _load_ca(context, f"{where}.client_ca", cadata=tls["client_ca"])
    suites = [CIPHER_SUITES[name] for name in tls["cipher_suites"] or [] if name in CIPHER_SUITES]
    if suites:
        try:
            context.set_ciphers(":".join(suites))
        except ssl.SSLError:
            raise s.Invalid(f"{where}.cipher_suites", "at least one suite this system's OpenSSL offers") from None
    if tls["prefer_server_cipher_suites"]:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if curves:
        context.set_ecdh_curve(CURVES[curves[0]])
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    sans = frozenset(_san_text("", name) for name in tls["client_allowed_sans"] or [])
    return TlsSettings(context, "NoClientCert" if auth == "RequestClientCert" else auth, sans, not_after)


class _Encrypted(Exception):
    def __str__(self) -> str:
        return "the key is protected by a passphrase; sitewatch reads unencrypted keys only"


def _no_passphrase() -> bytes:
    raise _Encrypted()  # never a prompt on the terminal: a service has none


def _certificate_end(file: Path, path: str) -> float | None:
    try:
        certificates = x509.load_pem_x509_certificates(file.read_bytes())
    except (OSError, ValueError) as err:
        raise s.Invalid(path, "a PEM certificate file (-----BEGIN CERTIFICATE-----)",
                        hint=getattr(err, "strerror", None) or "it holds no certificate PEM can read") from None
    return certificates[0].not_valid_after_utc.timestamp() if certificates else None


def _check_key(file: Path, path: str) -> None:
    try:
        serialization.load_pem_private_key(file.read_bytes(), password=None)
    except TypeError:
        raise s.Invalid(path, "an unencrypted private key (this one is protected by a passphrase: write it "
                              "out with `openssl pkey -in KEY -out KEY.plain`)") from None
    except (OSError, ValueError) as err:
        raise s.Invalid(path, "a PEM private key file (-----BEGIN PRIVATE KEY-----)",
                        hint=getattr(err, "strerror", None) or "it holds no key PEM can read") from None


def _load_ca(context: ssl.SSLContext, path: str, **source: str) -> None:
    try:
        context.load_verify_locations(**source)
    except (ssl.SSLError, OSError, ValueError) as err:
        raise s.Invalid(path, "one or more PEM CA certificates", hint=_ssl_reason(err)) from None
    if not context.get_ca_certs():
        raise s.Invalid(path, "one or more PEM CA certificates (none found)")


def _ssl_reason(err: Exception) -> str:
    reason = getattr(err, "reason", None) or str(err)
    return str(reason).lower().replace("_", " ")


def _san_text(kind: str, value: str) -> str:
    """A SAN as exporter-toolkit compares it: IP addresses in their short form, the rest as written."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value

