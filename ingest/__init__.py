"""sitewatch-ingest: takes what smartstatus.bat and getad-service already send, and serves it as the same
metrics the exporter's own kodeks and getad checks give, so repointing one URL brings a site in."""
