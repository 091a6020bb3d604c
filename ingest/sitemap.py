"""Whose upload this is: the distributor a token or key belongs to, and the site a client name, a register
or a workstation maps to.

smartstatus.bat names its distributor (``dealer:``), proves it with the distributor's ``?token=`` and names
its client in the file name; a config site claims that client. getad-service sends only ``X-API-Key``: a
site's own key makes the post that site's (explicit), a distributor's key leaves the post to be matched to
one of that distributor's sites by its register's serial number, then its PC's hostname, then its iikoRMS
address. Secrets are compared in constant time, and every key is compared, so the time taken tells nothing
about which one was close.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Callable

from exporter.config.loader import NAME_PATTERN
from exporter.secrets import SecretValue
from ingest.config import Distributor, IngestConfig, IngestSite, SmartstatusBinding, normal_rms_url
from ingest.refusals import Refusal, shown

_NAME = re.compile(NAME_PATTERN)
# Russian letters in Latin, as in passports (ГОСТ Р 52535.1-2006), for site ids made from client names.
_LATIN = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                  ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "i", "k", "l", "m", "n", "o", "p", "r", "s",
                   "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "iu", "ia"]))


def same_secret(given: str, secret: SecretValue | None) -> bool:
    """`given` equals the secret's value; the comparison takes as long whatever the two hold."""
    if secret is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret.reveal().encode("utf-8"))


def site_id_from_client(client: str) -> str | None:
    """A site id made from a client name: lower case, Russian letters in Latin, anything else a '-'.

    "Ромашка Офис" -> "romashka-ofis", "GorDuma_2" -> "gorduma_2"; None when nothing usable is left.
    """
    text = "".join(_LATIN.get(char, char) for char in client.strip().lower())
    text = re.sub(r"[^a-z0-9._-]+", "-", text).strip("-._")[:63].rstrip("-._")
    return text if text and _NAME.fullmatch(text) else None


@dataclass(frozen=True)
class GetadOwner:
    """Who a getad key belongs to: one site (its posts are that site's) or a distributor (match them)."""

    distributor: Distributor
    site: IngestSite | None = None


class SiteMap:
    def __init__(self, config: IngestConfig):
        self.config = config
        self._distributors = {name.casefold(): distributor for name, distributor in config.distributors.items()}
        self._by_client = {(site.distributor, site.smartstatus.client.casefold()): site
                           for site in config.sites if site.smartstatus}
        self._sites = {site.id: site for site in config.sites}
        self._getad_keys: list[tuple[SecretValue, GetadOwner]] = [
            (d.getad_api_key, GetadOwner(d)) for d in config.distributors.values() if d.getad_api_key]
        self._getad_keys += [(site.getad.api_key, GetadOwner(config.distributors[site.distributor], site))
                             for site in config.sites if site.getad and site.getad.api_key]

    def site(self, site_id: str) -> IngestSite | None:
        return self._sites.get(site_id)

    # --- smartstatus ------------------------------------------------------------------------------------

    def smartstatus_distributor(self, dealer: str, token: str) -> Distributor:
        if not dealer.strip():
            raise Refusal(403, "unknown_dealer", "no dealer: header (smartstatus.bat sends -H \"dealer: <name>\")")
        distributor = self._distributors.get(dealer.strip().casefold())
        if distributor is None or distributor.token is None:
            raise Refusal(403, "unknown_dealer", f"the dealer {shown(dealer)} takes no smartstatus uploads here")
        if not token:
            raise Refusal(403, "bad_token", f"no ?token= for dealer {distributor.name}")
        if not same_secret(token, distributor.token):
            raise Refusal(403, "bad_token", f"wrong token for dealer {distributor.name}")
        return distributor

    def smartstatus_site(self, distributor: Distributor, client: str,
                         derived_count: Callable[[str], int]) -> IngestSite:
        """The config site that claims `client`, or one made from its name where the distributor allows it.

        `derived_count(site_id)`: how many made sites the distributor has already, against its
        max_derived_sites, when `site_id` is not one of them (0 when it is: a site already made is never
        refused). Asked only for a client the config does not name, so a configured site's upload costs
        no count."""
        site = self._by_client.get((distributor.name, client.casefold()))
        if site is not None:
            return site
        if not distributor.derive_sites:
            raise Refusal(422, "unknown_client", f"no site of {distributor.name} has the client {shown(client)}: "
                                                 "add one (smartstatus.client) or set derive_sites")
        return self._derived(distributor, client, derived_count)

    def derived_site(self, distributor_name: str, client: str) -> IngestSite | None:
        """The made site a stored upload belongs to, if the config still makes it (for a restart or reload)."""
        distributor = self.config.distributors.get(distributor_name)
        if distributor is None or not distributor.derive_sites or distributor.token is None:
            return None
        if (distributor.name, client.casefold()) in self._by_client:
            return None  # the config now names the client: its site has its own data
        try:
            return self._derived(distributor, client, lambda _site_id: 0)
        except Refusal:
            return None

    def _derived(self, distributor: Distributor, client: str, derived_count: Callable[[str], int]) -> IngestSite:
        site_id = site_id_from_client(client)
        if site_id is None:
            raise Refusal(422, "unknown_client", f"no site id can be made from the client name {shown(client)}")
        if site_id in self._sites:
            raise Refusal(422, "unknown_client", f"the client {shown(client)} would become site {site_id}, which "
                                                 "the config gives to another client: map it explicitly")
        if (count := derived_count(site_id)) >= distributor.max_derived_sites:
            raise Refusal(422, "too_many_sites", f"{distributor.name} has {count} sites made from client "
                                                 "names, its max_derived_sites")
        labels = {**dict(distributor.labels), "client": client}
        return IngestSite(id=site_id, distributor=distributor.name, labels=tuple(sorted(labels.items())),
                          timezone=distributor.timezone, smartstatus=SmartstatusBinding(client, None, "kodeks"),
                          getad=None,
                          path=f"{distributor.path} (made from client {client!r})", derived=True)

    # --- getad --------------------------------------------------------------------------------------------

    def getad_owner(self, key: str) -> GetadOwner:
        if not key:
            raise Refusal(403, "bad_key", "no X-API-Key header")
        owner = None
        for secret, candidate in self._getad_keys:  # every key, no early exit: the time says nothing
            if same_secret(key, secret) and owner is None:
                owner = candidate
        if owner is None:
            raise Refusal(403, "bad_key", "wrong X-API-Key")
        return owner

    def getad_site(self, owner: GetadOwner, serial: str, hostname: str, url_rms: str) -> IngestSite:
        if owner.site is not None:
            return owner.site
        candidates = [site for site in self.config.sites if site.getad and site.distributor == owner.distributor.name]
        rms = normal_rms_url(url_rms) if url_rms else ""
        for matches in (lambda g: bool(serial) and serial in g.serials,
                        lambda g: bool(hostname) and hostname.casefold() in (h.casefold() for h in g.hostnames),
                        lambda g: bool(rms) and rms in g.url_rms):
            for site in candidates:
                if matches(site.getad):
                    return site
        said = ", ".join(f"{what} {shown(value)}" for what, value in (("serial", serial), ("hostname", hostname),
                                                                        ("url_rms", url_rms)) if value)
        raise Refusal(422, "unmapped", f"no site of {owner.distributor.name} lists this post's "
                                       f"{said or 'serial, hostname or url_rms (the post has none)'}")

