"""sitewatch pusher: relays site metrics to a Prometheus Pushgateway from sites behind NAT."""
