"""sitewatch Alertmanager side: routing config and the Telegram webhook receiver."""
