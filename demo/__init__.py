"""`make demo`: the whole sitewatch stack on loopback, from Debian's binaries, with simulated sites."""
