#!/usr/bin/env bash
# Makes (or removes) a network namespace with an address behind it where no host answers.
#   void-netns.sh up NAME    -> prints the silent address (198.18.N.99, from the benchmarking range)
#   void-netns.sh down NAME
# Packets to the address go into a veth pair that ends in the namespace; ARP for it is never answered,
# so nothing leaves this machine and nothing replies. Needs root.
set -euo pipefail
action=${1:?up or down}
name=${2:?namespace name}
case "$action" in
  up)
    ip netns del "$name" 2>/dev/null || true
    ip netns add "$name"
    # Each namespace gets a /24 of its own. Parallel runs (test workers, a demo beside the tests) may start
    # together: creating the host end of the pair is what claims a /24, so a taken one is simply skipped.
    start=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 250 ))
    for step in $(seq 0 249); do
      net=$(( (start + step) % 250 + 1 ))
      host_if="swv${net}h"
      if ip link add "$host_if" type veth peer name swvoid0 netns "$name" 2>/dev/null; then
        ip addr add "198.18.${net}.1/24" dev "$host_if"
        ip link set "$host_if" up
        ip -n "$name" addr add "198.18.${net}.2/24" dev swvoid0
        ip -n "$name" link set swvoid0 up
        ip -n "$name" link set lo up
        echo "198.18.${net}.99"
        exit 0
      fi
    done
    ip netns del "$name"
    echo "void-netns.sh: all 250 address blocks 198.18.1-250.0/24 are taken" >&2
    exit 1
    ;;
  down)
    # Removing the namespace removes its end of the pair, and with it the host's end.
    ip netns del "$name" 2>/dev/null || true
    ;;
  *) echo "usage: $0 up|down NAME" >&2; exit 2 ;;
esac
