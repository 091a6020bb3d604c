"""``sitewatch-exporter hash-password``: the bcrypt hash of a password, for a web config's basic_auth_users.

The password is read from a terminal prompt (twice, unseen) or, when standard input is not a terminal, from
its first line; only the hash is printed. bcrypt is already a dependency, so no htpasswd is needed.
"""

from __future__ import annotations

import argparse
import sys

import bcrypt

from exporter.commandline import read_secret_twice
from exporter.httpauth import BCRYPT_BYTES

DEFAULT_COST = 10  # about 60 ms per check; the servers check a password once and remember the outcome
EXIT_REFUSED = 2


def add_command(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("hash-password", help="print the bcrypt hash of a password read from a prompt or "
                                                        "standard input, for basic_auth_users of a web config")
    command.add_argument("--cost", type=_cost, default=DEFAULT_COST,
                         help=f"bcrypt cost, 4 to 31 (default {DEFAULT_COST}; each step doubles a check's time)")


def main(args: argparse.Namespace) -> int:
    password = read_secret_twice("password")
    if password is None:
        sys.stderr.write("error: the two entries differ\n")
        return EXIT_REFUSED
    # A password piped from a file saved by Notepad starts with a byte order mark; Prometheus' password_file
    # reading trims surrounding spaces, so a hash of them would never match what it sends.
    password = password.lstrip("\ufeff").strip()
    encoded = password.encode("utf-8")
    if not encoded:
        sys.stderr.write("error: empty password\n")
        return EXIT_REFUSED
    if len(encoded) > BCRYPT_BYTES:
        sys.stderr.write(f"error: the password is {len(encoded)} bytes long; bcrypt reads only the first "
                         f"{BCRYPT_BYTES}, so use a shorter one\n")
        return EXIT_REFUSED
    digest = bcrypt.hashpw(encoded, bcrypt.gensalt(args.cost)).decode("ascii")
    print("$2y$" + digest[4:])  # the prefix htpasswd writes; bcrypt, Go and libxcrypt read it alike
    return 0


def _cost(text: str) -> int:
    try:
        cost = int(text)
    except ValueError:
        cost = 0
    if not 4 <= cost <= 31:
        raise argparse.ArgumentTypeError(f"expected a whole number from 4 to 31, got {text!r}")
    return cost
