"""nginx.conf for the ingress, rendered from ingress.yml.

The push server lets a credential write only its own group. nginx works out three values from each
request:

- `$push_site`: the site in the path. Only `/metrics/job/sitewatch/site/<id>` qualifies; base64-encoded
  keys, extra labels, `..` and `%2F` tricks give no site, and so a 403.
- `$push_distributor`: that site's distributor, from sites.map, which `sitewatch-ingress` keeps.
- `$push_allowed`: 1 when the authenticated user is `site/<that site>` or `distributor/<its distributor>`.

The upstream path is rebuilt from `$push_site`, so what reaches the Pushgateway is exactly the group that
was checked.

With `push.import_endpoints`, the push server also takes `POST /api/v1/import/prometheus` for a
VictoriaMetrics or a vmagent. Labels are in the body there, so the site is not taken from the request:
`$import_site` is the credential's own site for `site/<id>` (a query naming another site is refused), and
for `distributor/<d>` the one site its `extra_label=site=<id>` argument names. It is checked like
`$push_site` (`$import_allowed`), and the query string sent upstream is rebuilt as
`extra_label=job=sitewatch&extra_label=site=$import_site`: the import endpoint writes extra_label over any
label of that name in the body, and the client's own arguments are dropped.

With `push.ingest_endpoint`, the push server also passes `push.ingest_paths` (sitewatch-ingest's upload
paths, `/upload` and `/api/submit_json` by default) to sitewatch-ingest, without a push credential:
smartstatus.bat and getad-service can send no basic auth, only their own `?token=` and `X-API-Key`, and
the ingest checks those itself. nginx lets through only POST to exactly those paths, rebuilds the path
upstream, and limits the body (`push.max_body`), the rate per client address (`push.ingest_rate`,
`push.ingest_burst`) and the time a client may take. It writes no error-log lines there, because nginx's
error lines quote the request line, `?token=` included; the access log has the path without its query.
`push.ingest_http_listen` adds a plain-HTTP server with these paths alone, for scripts that cannot be
moved to https:// (off by default: the token then crosses the internet in clear).

The office servers need an office credential. The receiver's webhook and its /metrics are not served here
at all: Alertmanager and Prometheus reach the receiver directly, on an address only they can
reach.
"""

from __future__ import annotations

from ingress.config import IngressConfig, OfficeApp

# Only the credential's name is logged, never the Authorization header, and $uri without its query string.
LOG_FORMAT = ('$remote_addr $remote_user [$time_iso8601] "$request_method $uri" $status $body_bytes_sent '
              '$request_time')
SITE_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
IMPORT_PATH = "/api/v1/import/prometheus"
JOB = "sitewatch"
INGEST_UPSTREAM = "sitewatch_ingest"


def render(config: IngressConfig) -> str:
    folder = config.folder
    user = f"user {config.user};\n" if config.user else ""
    upstreams = _upstreams("pushgateway", config.pushgateways)
    routing = _scope_maps(config, "push", "$push_site") + _routing_maps("push", "pushgateway", config.pushgateways,
                                                                        config.shards)
    import_location = ""
    if config.import_endpoints:
        upstreams += _upstreams("import", config.import_endpoints)
        routing += (_import_site_map() + _scope_maps(config, "import", "$import_site")
                    + _routing_maps("import", "import", config.import_endpoints, config.import_shards))
        import_location = _import_location(config)
    ingest_zone = ingest_locations = ingest_server = ""
    if config.ingest_endpoint:
        # Keyed by address alone: the uploads carry no credential nginx knows.
        ingest_zone = (f"    limit_req_zone $binary_remote_addr zone=ingest_per_address:10m "
                       f"rate={config.ingest_rate};\n")
        # No keepalive: the ingest answers one request per connection.
        upstreams += f"    upstream {INGEST_UPSTREAM} {{\n        server {config.ingest_endpoint};\n    }}\n"
        ingest_locations = _ingest_locations(config)
        if config.ingest_http_listen:
            ingest_server = _ingest_http_server(config, ingest_locations)
    office = ingest_server + "".join(_office_server(config, app) for app in config.office)
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
{ingest_zone}    map_hash_bucket_size 128;  # site ids of up to 63 characters

    map $uri $push_site {{
        default "";
        "~^/metrics/job/{JOB}/site/(?<site>{SITE_PATTERN})$" $site;
    }}
{routing}{upstreams}    upstream push_refused {{
        server unix:{folder}/tmp/refused.sock;
    }}

    server {{
        listen unix:{folder}/tmp/refused.sock;
        access_log off;
        location / {{
            return 403 "this credential may not write this site\\n";
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
            proxy_pass http://$push_destination/metrics/job/{JOB}/site/$push_site;
        }}
{import_location}{ingest_locations}    }}
{office}}}
"""


def _upstreams(prefix: str, addresses: dict[str, str]) -> str:
    """An `upstream <prefix>_<name>` block for each address."""
    return "".join(f"    upstream {prefix}_{name} {{\n        server {address};\n        keepalive 8;\n    }}\n"
                   for name, address in addresses.items())


def _scope_maps(config: IngressConfig, kind: str, site: str) -> str:
    """`$<kind>_allowed` (1 when the credential may write `site`) and `$<kind>_distributor`, from sites.map."""
    return f"""    # sites.map lines are "<site> <distributor>/<site>;". nginx finds a string key whatever its case, so
    # the value repeats the site, and the case-sensitive comparison below refuses "SHOP-01" for "shop-01".
    map {site} ${kind}_entry {{
        default "";
        include {config.site_map};
    }}
    # Allowed: site/<id> for its own registered site; distributor/<d> for the sites sites.map gives <d>.
    map "$remote_user:{site}:${kind}_entry" ${kind}_allowed {{
        default 0;
        "~^site/(?<owner>[^:]+):\\k<owner>:[^:/]+/\\k<owner>$" 1;
        "~^distributor/(?<owner>[^:/]+):(?<wanted>[^:]+):\\k<owner>/\\k<wanted>$" 1;
    }}
    map ${kind}_entry ${kind}_distributor {{
        default "";
        "~^(?<distributor>[^/]+)/" $distributor;
    }}
"""


def _routing_maps(kind: str, prefix: str, upstreams: dict[str, str], shards: dict[str, str]) -> str:
    """`$<kind>_destination`: the distributor's upstream when the request is allowed, else push_refused."""
    lines = "".join(f"        {distributor} {prefix}_{name};\n" for distributor, name in shards.items())
    return f"""    map ${kind}_distributor ${kind}_upstream {{
        default {prefix}_{next(iter(upstreams))};
{lines}    }}
    # Decided in proxy_pass, so after auth_basic: only a request with the right password learns whether
    # the site is its own, and a refusal is counted by limit_req like any other request.
    map ${kind}_allowed ${kind}_destination {{
        1 ${kind}_upstream;
        default push_refused;
    }}
"""


def _import_site_map() -> str:
    # The query is read raw: the pusher sends "site%3D<id>" (urlencoded), a hand-made request "site=<id>".
    # Anything else (another encoding, a longer value) names no site: a distributor then has none, so a 403,
    # and a site credential writes its own.
    label = "extra_label=site(?:=|%3[Dd])"
    user = "[^?/]+[?]"
    return f"""    # The site an import writes is decided here, not by the client: a site credential's own id; a
    # distributor credential's the one site its extra_label argument names. A query naming two sites, or a
    # site credential's naming another site (a pusher configured with the wrong id or several sites), gives
    # no site, so a 403, as the same mistake gets on the Pushgateway path, instead of mixing two sites' data.
    map "$remote_user?$args" $import_site {{
        default "";
        "~^(?:site|distributor)/{user}(?:.*&)?{label}.*&{label}" "";
        "~^site/(?<site>{SITE_PATTERN})[?](?:.*&)?{label}\\k<site>(?:&|$)" $site;
        "~^site/{user}(?:.*&)?{label}" "";
        "~^site/(?<site>{SITE_PATTERN})[?]" $site;
        "~^distributor/{user}(?:.*&)?{label}(?<site>{SITE_PATTERN})(?:&|$)" $site;
    }}
"""


def _import_location(config: IngressConfig) -> str:
    # An exact match: VictoriaMetrics also serves /api/v1/import/prometheus/metrics/job/..., with labels
    # in the path, and every other /api/ path (queries, export, deletion) is left to `location /`.
    return f"""
        location = {IMPORT_PATH} {{
            if ($request_method != POST) {{
                add_header Allow POST always;
                return 405;
            }}
            limit_req zone=push_per_address burst={max(config.burst, 10)} nodelay;
            limit_req zone=push_per_credential burst={config.burst} nodelay;
            auth_basic "sitewatch push";
            auth_basic_user_file {config.push_credentials};
            # Every argument is nginx's own: the client's extra_label (or anything else) never reaches the
            # endpoint, and extra_label wins over a site or job label in the body.
            proxy_pass http://$import_destination{IMPORT_PATH}?extra_label=job={JOB}&extra_label=site=$import_site;
        }}
"""


def _ingest_locations(config: IngressConfig) -> str:
    """An exact-match location per upload path: POST only, rate-limited per address, passed to the ingest with
    the path rebuilt and the client's query (smartstatus.bat's ?token=) as it came."""
    locations = "".join(f"""        location = {path} {{
            if ($request_method != POST) {{
                add_header Allow POST always;
                return 405;
            }}
            error_log /dev/null emerg;
            limit_req zone=ingest_per_address burst={config.ingest_burst} nodelay;
            client_body_timeout 30s;
            proxy_pass http://{INGEST_UPSTREAM}{path}$is_args$args;
            proxy_set_header Host $host;
            proxy_set_header Connection "";  # set here, the http block's proxy_set_header lines no longer apply
            proxy_set_header Authorization "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 5s;
            proxy_send_timeout 30s;
            proxy_read_timeout 30s;
        }}
""" for path in config.ingest_paths)
    return f"""
        # sitewatch-ingest's upload paths, without a push credential: smartstatus.bat and getad-service
        # cannot send one, and the ingest checks their ?token= or X-API-Key itself (a wrong one: its 403).
        # nginx's error lines quote the request line, ?token= included, so none are written here; the access
        # log has every outcome (413, 429, 502, ...) with the path alone.
{locations}"""


def _ingest_http_server(config: IngressConfig, locations: str) -> str:
    # Plain HTTP, for scripts that cannot be moved to https://: the upload paths and nothing else (no pushes,
    # whose basic auth would then cross the internet in clear).
    return f"""
    server {{
        listen {config.ingest_http_listen};
        client_max_body_size {config.max_body};

        location / {{
            return 403;
        }}
{locations}    }}
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
