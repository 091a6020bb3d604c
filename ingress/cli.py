"""``sitewatch-ingress``: render nginx.conf, issue and revoke push and office credentials, reload nginx.

    sitewatch-ingress render                                   # nginx.conf from ingress.yml, checked by nginx -t
    sitewatch-ingress cert --host push.example.ru              # a self-signed certificate (demo, first start)
    sitewatch-ingress issue site shop-01 --distributor pos-service
    sitewatch-ingress issue distributor kodeks-spb             # covers every site sites.map gives it
    sitewatch-ingress register shop-02 --distributor kodeks-spb  # a site that pushes with its distributor's
    sitewatch-ingress issue office ivanov                      # the office UIs and Pushgateway reads
    sitewatch-ingress revoke site shop-01
    sitewatch-ingress list

Every change reloads nginx gracefully (SIGHUP to its pid file), so no connection is dropped.
Exit codes: 0 done, 1 refused (the message says why), 2 a bad config or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from exporter import lockedfile
from exporter.config import ConfigError
from ingress import certificate, nginxconf, nginxproc
from ingress.config import IngressConfig, load_ingress_config
from ingress.credentials import KINDS, Credential, CredentialError, CredentialStore

DEFAULT_CONFIG = os.environ.get("SITEWATCH_INGRESS_CONFIG", "/etc/sitewatch/ingress.yml")
EXIT_REFUSED = 1
EXIT_BAD_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sitewatch-ingress",
                                     description="nginx in front of the sitewatch office stack: push credentials "
                                                 "scoped to their sites, office credentials for the UIs.")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"the ingress config (default {DEFAULT_CONFIG}, or $SITEWATCH_INGRESS_CONFIG)")
    parser.add_argument("--nginx", default="nginx", help="the nginx binary, for `nginx -t` (default nginx)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    render = commands.add_parser("render", help="write nginx.conf (and empty credential files), check it, reload")
    render.add_argument("--no-check", action="store_true", help="skip `nginx -t`")
    cert = commands.add_parser("cert", help="write a self-signed certificate and key where tls: says")
    cert.add_argument("--host", action="append", required=True, help="a name or IP address (repeatable)")
    cert.add_argument("--days", type=int, default=825)
    issue = commands.add_parser("issue", help="make or replace a credential; prints its password once")
    issue.add_argument("kind", choices=KINDS)
    issue.add_argument("name")
    issue.add_argument("--distributor", help="for a site: its distributor (registers the site)")
    issue.add_argument("--move", action="store_true", help="move a registered site to another distributor")
    issue.add_argument("--password-file", type=Path,
                       help="write the password to this file (mode 0600) instead of printing it")
    register = commands.add_parser("register", help="put a site under a distributor in sites.map")
    register.add_argument("site")
    register.add_argument("--distributor", required=True)
    register.add_argument("--move", action="store_true")
    forget = commands.add_parser("forget", help="remove a site from sites.map")
    forget.add_argument("site")
    revoke = commands.add_parser("revoke", help="remove a credential")
    revoke.add_argument("kind", choices=KINDS)
    revoke.add_argument("name")
    commands.add_parser("list", help="credentials and sites")
    commands.add_parser("reload", help="tell nginx to re-read its files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_ingress_config(args.config)
    except ConfigError as err:
        sys.stderr.write(f"config error: {err}\n")
        return EXIT_BAD_CONFIG
    store = CredentialStore(config.push_credentials, config.office_credentials, config.site_map)
    try:
        return _run(args, config, store)
    except (CredentialError, lockedfile.EditError, nginxproc.ReloadProblem) as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_REFUSED


def _run(args: argparse.Namespace, config: IngressConfig, store: CredentialStore) -> int:
    if args.command == "render":
        for folder in (config.folder, config.folder / "tmp", config.log_folder):
            folder.mkdir(parents=True, exist_ok=True)
        store.ensure_files()
        if nginxproc.running(config.pid_file) is None:  # a socket left by a killed nginx would block its start
            (config.folder / "tmp" / "refused.sock").unlink(missing_ok=True)
        text = nginxconf.render(config)
        if not args.no_check:  # checked before it replaces the running config's file
            candidate = config.folder / ".nginx.conf.candidate"
            lockedfile.replace(candidate, text)
            try:
                nginxproc.check(candidate, args.nginx)
            finally:
                candidate.unlink(missing_ok=True)
        lockedfile.replace(config.nginx_conf, text)
        print(f"wrote {config.nginx_conf}" + ("" if args.no_check else " (nginx -t: ok)"))
        _reload(config, nginx=args.nginx, check=not args.no_check)
        return 0
    if args.command == "cert":
        certificate.self_signed(args.host, config.certificate, config.key, args.days)
        print(f"wrote {config.certificate} and {config.key} (self-signed, for {', '.join(args.host)}); sites "
              f"trust it with push.tls.ca_file: a copy of {config.certificate.name}")
        _reload(config, nginx=args.nginx)
        return 0
    if args.command == "issue":
        return _issue(args, config, store)
    if args.command == "register":
        changed = store.register_site(args.site, args.distributor, args.move)
        print(f"site {args.site}: distributor {args.distributor}" + ("" if changed else " (already)"))
        if changed:
            _reload(config, nginx=args.nginx)
        return 0
    if args.command == "forget":
        store.forget_site(args.site)
        print(f"site {args.site} removed from {config.site_map}")
        _reload(config, nginx=args.nginx)
        return 0
    if args.command == "revoke":
        credential = Credential(args.kind, args.name)
        store.revoke(credential)
        print(f"revoked {credential.user}")
        _reload(config, nginx=args.nginx)
        return 0
    if args.command == "list":
        sites = store.sites()
        print(f"{'KIND':<12} {'NAME':<28} SCOPE")
        for credential in store.credentials():
            if credential.kind == "distributor":
                scope = ", ".join(sorted(s for s, d in sites.items() if d == credential.name)) or "(no sites yet)"
            elif credential.kind == "site":
                scope = f"its own group (distributor {sites.get(credential.name, '?')})"
            else:
                scope = "office UIs and Pushgateway reads"
            print(f"{credential.kind:<12} {credential.name:<28} {scope}")
        return 0
    _reload(config, say_none=True, nginx=args.nginx)
    return 0


def _issue(args: argparse.Namespace, config: IngressConfig, store: CredentialStore) -> int:
    credential = Credential(args.kind, args.name)
    if args.kind == "site" and args.distributor:
        store.register_site(args.name, args.distributor, args.move)
    elif args.distributor:
        sys.stderr.write("error: --distributor is for a site credential\n")
        return EXIT_BAD_CONFIG
    password = store.issue(credential)
    if args.password_file:
        lockedfile.replace(args.password_file, password + "\n", new_mode=0o600)
        args.password_file.chmod(0o600)  # also when the file was there before, with looser permissions
        shown = f"{{file: {args.password_file}}}"
        print(f"issued {credential.user}; the password is in {args.password_file} (mode 0600)")
    else:
        shown = "{file: push.password}"
        print(f"issued {credential.user}; its password, shown only now:\n\n    {password}\n")
    if args.kind != "office":
        server = f"https://<this server's name>:{config.push_listen.rsplit(':', 1)[1]}"
        print("in the site's config (the password in a file beside it, or an enc: value):\n"
              f"  push:\n    gateway: {server}\n"
              f"    basic_auth: {{username: {credential.user}, password: {shown}}}\n"
              f"    tls: {{ca_file: <the CA of {config.certificate.name}, for a self-signed one the file itself>}}")
        if config.import_endpoints:
            print("or, to push to VictoriaMetrics, instead of gateway:\n"
                  f"    import_url: {server}{nginxconf.IMPORT_PATH}")
    _reload(config, nginx=args.nginx)
    return 0


def _reload(config: IngressConfig, say_none: bool = False, nginx: str = "nginx", check: bool = True) -> None:
    pid = nginxproc.reload(config.pid_file, config.nginx_conf if check else None, nginx)
    if pid is not None:
        print(f"nginx reloaded (pid {pid})")
    elif say_none:
        print(f"no nginx runs with {config.pid_file}: the files apply when it starts")


if __name__ == "__main__":
    sys.exit(main())
