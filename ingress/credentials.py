"""Push and office credentials, and the site map: the files nginx reads and `sitewatch-ingress` edits.

- push.htpasswd: `site/<id>` and `distributor/<name>` users. A site credential may write only that site's
  group; a distributor's may write the groups of every site sites.map gives it.
- office.htpasswd: people at the office, for the UIs and Pushgateway reads.
- sites.map: `<site> <distributor>/<site>;` lines, the map nginx uses to scope credentials and to pick a
  distributor's Pushgateway.

A password is made here, shown once, and stored only as a bcrypt hash. nginx checks it with the
system's crypt(3), which on Debian handles bcrypt. The cost is kept low, because every push is checked:
a long random password does not need key stretching to resist guessing. Every edit is made under a lock
and replaces the file whole (exporter.lockedfile).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from exporter import lockedfile

KINDS = ("site", "distributor", "office")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
BCRYPT_COST = 6  # ~3 ms per check on one core: cheap per push, and the password is 32 random characters
PASSWORD_BYTES = 24  # 32 characters of URL-safe base64


class CredentialError(Exception):
    """A change that cannot be made; str() says why."""


@dataclass(frozen=True)
class Credential:
    kind: str  # site, distributor or office
    name: str

    @property
    def user(self) -> str:
        return self.name if self.kind == "office" else f"{self.kind}/{self.name}"


class CredentialStore:
    def __init__(self, push_file: Path, office_file: Path, site_map: Path):
        self.push_file = push_file
        self.office_file = office_file
        self.site_map = site_map

    # --- reading ---------------------------------------------------------------------------------------

    def credentials(self) -> list[Credential]:
        found = []
        for user in _users(self.push_file):
            kind, _, name = user.partition("/")
            found.append(Credential(kind, name))
        found += [Credential("office", user) for user in _users(self.office_file)]
        return found

    def sites(self) -> dict[str, str]:
        """site -> distributor, from sites.map."""
        sites = {}
        if self.site_map.exists():
            for line in self.site_map.read_text(encoding="utf-8").splitlines():
                match = re.fullmatch(r"\s*(\S+)\s+([^/\s]+)/\S+;\s*", line)
                if match:
                    sites[match.group(1)] = match.group(2)
        return sites

    # --- changing ----------------------------------------------------------------------------------------

    def register_site(self, site: str, distributor: str, move: bool = False) -> bool:
        """Puts `site` under `distributor` in sites.map; True if that changed anything."""
        _check_name("site", site)
        _check_name("distributor", distributor)
        with lockedfile.locked(self.site_map):
            sites = self.sites()
            current = sites.get(site)
            if current == distributor:
                return False
            twin = next((other for other in sites if other.lower() == site.lower() and other != site), None)
            if twin is not None:  # nginx looks site ids up whatever their case: two such would clash
                raise CredentialError(f"site {site} differs from the registered site {twin} only in case")
            if current is not None and not move:
                raise CredentialError(f"site {site} belongs to distributor {current}, not {distributor}: pass "
                                      "--move to move it (its pushes then go to that distributor's Pushgateway)")
            sites[site] = distributor
            lockedfile.replace(self.site_map, _site_map_text(sites))
        return True

    def forget_site(self, site: str) -> None:
        with lockedfile.locked(self.site_map):
            sites = self.sites()
            if sites.pop(site, None) is None:
                raise CredentialError(f"no site {site} in {self.site_map}")
            lockedfile.replace(self.site_map, _site_map_text(sites))

    def issue(self, credential: Credential) -> str:
        """Makes (or replaces) the credential's password and returns it; only its hash is stored."""
        _check_name(credential.kind, credential.name)
        if credential.kind == "site" and credential.name not in self.sites():
            raise CredentialError(f"site {credential.name} is not in {self.site_map}: give --distributor, so "
                                  "that its pushes go to that distributor's Pushgateway")
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        # $2y$, as Apache's htpasswd writes: the same algorithm as Python's $2b$, and the variant every
        # crypt(3) knows (musl's, in the Alpine nginx image, refuses $2b$).
        digest = "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()[4:]
        path = self._file_of(credential)
        with lockedfile.locked(path):
            lines = [line for line in _lines(path) if _user_of(line) != credential.user]
            lines.append(f"{credential.user}:{digest}")
            lockedfile.replace(path, "\n".join(lines) + "\n", new_mode=0o640)
        return password

    def revoke(self, credential: Credential) -> None:
        path = self._file_of(credential)
        with lockedfile.locked(path):
            lines = _lines(path)
            kept = [line for line in lines if _user_of(line) != credential.user]
            if len(kept) == len(lines):
                raise CredentialError(f"no credential {credential.user} in {path}")
            lockedfile.replace(path, "".join(f"{line}\n" for line in kept), new_mode=0o640)

    def ensure_files(self) -> None:
        """Empty credential files and site map where there are none yet (nginx refuses a missing include)."""
        for path in (self.push_file, self.office_file, self.site_map):
            if not path.exists():
                lockedfile.replace(path, "", new_mode=0o640)

    def _file_of(self, credential: Credential) -> Path:
        return self.office_file if credential.kind == "office" else self.push_file


def _check_name(kind: str, name: str) -> None:
    if kind not in KINDS:
        raise CredentialError(f"a credential is for a site, a distributor or an office user, not {kind!r}")
    if not NAME.fullmatch(name):
        raise CredentialError(f"{kind} {name!r}: expected letters, digits, '.', '_' or '-' (up to 63, starting "
                              "with a letter or digit), as in site ids")


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _user_of(line: str) -> str:
    return line.split(":", 1)[0]


def _users(path: Path) -> list[str]:
    return [_user_of(line) for line in _lines(path) if not line.startswith("#")]


def _site_map_text(sites: dict[str, str]) -> str:
    # The value repeats the site: nginx matches the key in any case, the rendered config then compares
    # the site exactly (nginxconf.py).
    header = "# site distributor/site; (kept by sitewatch-ingress; nginx includes it in a map block)\n"
    return header + "".join(f"{site} {distributor}/{site};\n" for site, distributor in sorted(sites.items()))
