"""nginx.conf for the ingress, rendered from ingress.yml.

The push server lets a credential write only its own group. nginx works out three values from each
request:

- `$push_site`: the site in the path. Only `/metrics/job/sitewatch/site/<id>` qualifies; base64-encoded
  keys, extra labels, `..` and `%2F` tricks give no site, and so a 403.
- `$push_distributor`: that site's distributor, from sites.map, which `sitewatch-ingress` keeps.
- `$push_allowed`: 1 when the authenticated user is `site/<that site>` or `distributor/<its distributor>`.

The upstream path is rebuilt from `$push_site`, so what reaches the Pushgateway is exactly the group that
was checked. The office servers need an office credential. The receiver's webhook and its /metrics are not
served here at all: Alertmanager and Prometheus reach the receiver directly, on an address only they can
reach.
"""

from __future__ import annotations

from ingress.config import IngressConfig, OfficeApp

# Only the credential's name is logged, never the Authorization header, and $uri without its query string.
LOG_FORMAT = ('$remote_addr $remote_user [$time_iso8601] "$request_method $uri" $status $body_bytes_sent '
              '$request_time')
SITE_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,62}"


def render(config: IngressConfig) -> str:
    folder = config.folder
    user = f"user {config.user};\n" if config.user else ""
    upstreams = "".join(f"    upstream pushgateway_{name} {{\n        server {address};\n        keepalive 8;\n    }}\n"
                        for name, address in config.pushgateways.items())
    default_gateway = next(iter(config.pushgateways))
    shards = "".join(f"        {distributor} pushgateway_{name};\n" for distributor, name in config.shards.items())
    office = "".join(_office_server(config, app) for app in config.office)
    return f"""# Rendered by `sitewatch-ingress render` from {config.source}. Do not edit: change that file and
# render again. Credentials and the site map are separate files that `sitewatch-ingress` edits.
{user}worker_processes auto;
pid {config.pid_file};
error_log {config.log_folder}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    server_tokens off;
    log_format sitewatch '{LOG_FORMAT}';
    access_log {config.log_folder}/access.log sitewatch;
    client_body_temp_path {folder}/tmp/body;
    proxy_temp_path {folder}/tmp/proxy;
    fastcgi_temp_path {folder}/tmp/fastcgi;
    uwsgi_temp_path {folder}/tmp/uwsgi;
    scgi_temp_path {folder}/tmp/scgi;

    ssl_certificate {config.certificate};
    ssl_certificate_key {config.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:sitewatch_tls:10m;

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Authorization "";  # the upstreams never see a credential

    limit_req_status 429;
    # Per credential: nginx counts a request before it checks the password (limit_req runs before
    # auth_basic), so the per-address zone also limits anyone guessing.
    limit_req_zone $remote_user zone=push_per_credential:10m rate={config.rate};
    limit_req_zone $binary_remote_addr zone=push_per_address:10m rate={config.address_rate};
    limit_req_zone $binary_remote_addr zone=office_per_address:10m rate=20r/s;
    map_hash_bucket_size 128;  # site ids of up to 63 characters

    map $uri $push_site {{
        default "";
        "~^/metrics/job/sitewatch/site/(?<site>{SITE_PATTERN})$" $site;
    }}
    # sites.map lines are "<site> <distributor>/<site>;". nginx finds a string key whatever its case, so
    # the value repeats the site, and the case-sensitive comparison below refuses "SHOP-01" for "shop-01".
    map $push_site $push_entry {{
        default "";
        include {config.site_map};
    }}
    # Allowed: site/<id> for its own registered group; distributor/<d> for the groups sites.map gives <d>.
    map "$remote_user:$push_site:$push_entry" $push_allowed {{
        default 0;
        "~^site/(?<owner>[^:]+):\\k<owner>:[^:/]+/\\k<owner>$" 1;
        "~^distributor/(?<owner>[^:/]+):(?<wanted>[^:]+):\\k<owner>/\\k<wanted>$" 1;
    }}
    map $push_entry $push_distributor {{
        default "";
        "~^(?<distributor>[^/]+)/" $distributor;
    }}
    map $push_distributor $push_upstream {{
        default pushgateway_{default_gateway};
{shards}    }}
    # Decided in proxy_pass, so after auth_basic: only a request with the right password learns whether
    # the group is its own, and a refusal is counted by limit_req like any other request.
    map $push_allowed $push_destination {{
        1 $push_upstream;
        default push_refused;
    }}
{upstreams}    upstream push_refused {{
        server unix:{folder}/tmp/refused.sock;
    }}

    server {{
        listen unix:{folder}/tmp/refused.sock;
        access_log off;
        location / {{
            return 403 "this credential may not write this group\\n";
        }}
    }}
    server {{
        listen {config.push_listen} ssl;
        client_max_body_size {config.max_body};

        location / {{
            return 403;  # reads and everything else: only a site's own group may be written here
        }}

        location /metrics/job/ {{
            limit_except PUT POST DELETE {{
                deny all;
            }}
            limit_req zone=push_per_address burst={max(config.burst, 10)} nodelay;
            limit_req zone=push_per_credential burst={config.burst} nodelay;
            auth_basic "sitewatch push";
            auth_basic_user_file {config.push_credentials};
            proxy_pass http://$push_destination/metrics/job/sitewatch/site/$push_site;
        }}
    }}
{office}}}
"""


def _office_server(config: IngressConfig, app: OfficeApp) -> str:
    # An office login is for looking: the Prometheus family's lifecycle endpoints stay closed, and the
    # Pushgateway is read-only here (pushes come through the push port, with a site's credential).
    closed = """
        location ~ ^/-/(reload|quit)$ {
            return 403;
        }
"""
    methods = ""
    if app.name == "pushgateway":
        methods = """            limit_except GET HEAD {
                deny all;
            }
"""
    if app.name == "receiver":
        # Alertmanager posts to the receiver directly and Prometheus scrapes it directly; through here only
        # its status page is served.
        closed += """
        location /alert/ {
            return 403;
        }
        location = /metrics {
            return 403;
        }
"""
    return f"""
    server {{
        listen {app.listen} ssl;
        client_max_body_size 16m;
        auth_basic "sitewatch office: {app.name}";
        auth_basic_user_file {config.office_credentials};
        limit_req zone=office_per_address burst=200 nodelay;
{closed}
        location / {{
{methods}            proxy_pass http://{app.upstream};
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";  # set here, the http block's proxy_set_header lines no longer apply
            proxy_set_header Authorization "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_read_timeout 300s;
        }}
    }}
"""
