"""sitewatch-ingress: nginx in front of the office stack, with push credentials scoped to their sites."""
