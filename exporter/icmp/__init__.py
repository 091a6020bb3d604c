"""ICMP echo for the ping check: one engine, one socket per address family, every target multiplexed."""
