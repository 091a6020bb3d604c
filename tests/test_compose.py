"""docker-compose.yml, the Dockerfile and .env.example stay consistent with each other and with the repo; so
does examples/systemd/sitewatch-ingest.service, with the address Prometheus scrapes and the ingress proxies to.

No Docker engine is needed: the files are parsed and checked structurally, and when Debian's
docker-compose (1.29) is installed, `docker-compose config` validates and interpolates the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The service whose network namespace the others join, so prometheus.yml's and alertmanager.yml's
# 127.0.0.1 addresses keep working; and which service answers each of those ports.
NAMESPACE_OWNER = "prometheus"
LOCAL_PORTS = {9090: "prometheus", 9093: "alertmanager", 9091: "pushgateway", 9816: "sitewatch-receiver",
               9817: "sitewatch-ingest"}
# Host paths outside the repo that may be bind-mounted read-only.
SYSTEM_MOUNTS = {"/usr/share/zoneinfo"}
# The ingress: its config for the compose stack, where the sitewatch-ingress services see it, and the
# services that run once (render) or on demand (the tools) rather than stay up.
INGRESS_CONFIG = ROOT / "ingress" / "ingress-compose.yml"
INGRESS_CONFIG_IN_CONTAINER = "/etc/sitewatch/ingress.yml"
ONE_SHOT = {"ingress-render", "ingress"}
# Each office application of the ingress config, and the compose service that runs it.
OFFICE_SERVICES = {"prometheus": "prometheus", "alertmanager": "alertmanager", "pushgateway": "pushgateway",
                   "grafana": "grafana", "receiver": "sitewatch-receiver"}
# The official nginx image's worker user and its uid/gid.
NGINX_USER, NGINX_GID = "nginx", 101
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|(^|_)KEY$|CREDENTIAL", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ is a literal $.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def services() -> dict[str, dict]:
    return compose()["services"]


def ingress_config():
    from ingress.config import load_ingress_config

    return load_ingress_config(INGRESS_CONFIG)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation, enough for these files: the env's value, else the default."""
    env = env or {}

    def value(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        return argument if operator in (":-", "-") else ""

    return VARIABLE.sub(value, text)


def bind_mounts() -> list[tuple[str, str, str]]:
    """(service, host path with defaults filled in, container path) of every bind mount."""
    mounts = []
    for name, service in services().items():
        for volume in service.get("volumes", []):
            assert isinstance(volume, str), f"{name}: use the short volume syntax (source:target[:mode])"
            source, target = interpolate(volume).split(":")[:2]
            if source.startswith((".", "/")):
                mounts.append((name, source, target))
    return mounts


def env_names(node):
    """Names of the {env: NAME} secrets of a sitewatch config."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            yield node["env"]
        for value in node.values():
            yield from env_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_names(value)


def test_every_image_is_pinned_to_a_version():
    for name, service in services().items():
        assert "image" in service, f"{name}: no image (a built service names its image and tag too)"
        image = interpolate(service["image"])
        _repository, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag and tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: image {image!r}: the tag is not a version"


def test_every_service_restarts_and_has_a_healthcheck():
    # Every image here can run a health probe: the prom/* images have busybox wget, grafana has wget,
    # the sitewatch image has python, nginx:*-alpine has busybox wget. Only the one-shot ingress services
    # (they run and exit) are exempt.
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name}: a one-shot service is not restarted"
            assert "healthcheck" not in service, f"{name}: a one-shot service has no healthcheck"
            continue
        assert service.get("restart") == "unless-stopped", f"{name}: restart policy"
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck.test"
        if name == "nginx":
            # nginx has no health endpoint of its own: it asks the push server, where nginx itself answers
            # 403 at / (no upstream, no credential).
            port = ingress_config().push_listen.rsplit(":", 1)[1]
            assert any(f"https://127.0.0.1:{port}/" in part and "403" in part for part in test), \
                "nginx: the healthcheck does not ask the push server for its own 403"
            continue
        assert any("/-/healthy" in part or "/-/ready" in part or "/api/health" in part for part in test), \
            f"{name}: the healthcheck asks no health endpoint"


@pytest.mark.parametrize("service,source,target", bind_mounts(), ids=[f"{m[0]}:{m[1]}" for m in bind_mounts()])
def test_bind_mounted_path_exists(service, source, target):
    if source.startswith("/"):
        assert source in SYSTEM_MOUNTS, f"{service}: host path {source} outside the repo"
        return
    path = (ROOT / source).resolve()
    top = Path(source).parts[0]
    if top == "grafana" and not (ROOT / "grafana").is_dir():
        pytest.skip("grafana/ is not in the repo yet: its provisioning and dashboards mounts are not checked")
    assert path.is_relative_to(ROOT), f"{service}: {source} is outside the repo"
    assert path.exists(), f"{service}: bind-mounted {source} does not exist"


def test_named_volumes_are_declared_and_used():
    declared = set(compose().get("volumes") or {})
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = interpolate(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared under volumes:"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"
    for name in ("prometheus", "alertmanager", "pushgateway", "grafana", "sitewatch-receiver", "sitewatch-ingest"):
        assert any(not v.startswith((".", "/", "$")) for v in services()[name].get("volumes", [])), \
            f"{name}: its data is on no named volume"


def test_every_variable_is_in_env_example():
    used = {match.group(1) for match in VARIABLE.finditer(COMPOSE_FILE.read_text(encoding="utf-8"))}
    missing = used - set(env_example())
    assert not missing, f"variables docker-compose.yml uses but .env.example lacks: {sorted(missing)}"


def test_no_secret_is_written_inline():
    for name, service in services().items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: write environment as a mapping"
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}", str(value)), \
                    f"{name}: {key} must come from the environment (${{{key}}}), not be written here"
                operator, argument = VARIABLE.fullmatch(str(value)).group(2, 3)
                assert not argument or operator in (":?", "?"), \
                    f"{name}: {key} has a default value: a secret must have none"
    text = COMPOSE_FILE.read_text(encoding="utf-8") + ENV_EXAMPLE.read_text(encoding="utf-8")
    assert not re.search(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b", text), "a Telegram bot token is written out"
    for key, value in env_example().items():
        if SECRET_NAME.search(key) and value:
            assert re.search(r"replace|change-me|example", value), \
                f".env.example: {key} should be an obvious placeholder, not {value!r}"


def test_shared_namespace_serves_the_configs_127_0_0_1_addresses():
    all_services = services()
    owner = all_services[NAMESPACE_OWNER]
    assert "network_mode" not in owner
    published = {int(str(port).rsplit(":", 2)[-1].split("/")[0]) for port in owner.get("ports", [])}
    for port, name in LOCAL_PORTS.items():
        if name != NAMESPACE_OWNER:
            assert all_services[name].get("network_mode") == f"service:{NAMESPACE_OWNER}", \
                f"{name} must share {NAMESPACE_OWNER}'s network namespace to be at 127.0.0.1:{port}"
            assert "ports" not in all_services[name], f"{name}: publish its ports on {NAMESPACE_OWNER}"
    for name, service in all_services.items():
        if service.get("network_mode", "").startswith("service:"):
            assert "ports" not in service, f"{name}: publish its ports on {NAMESPACE_OWNER}"
    # Every 127.0.0.1 address the configs use is one of those services.
    texts = [(ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"),
             (ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")]
    ports = {int(port) for text in texts for port in re.findall(r"127\.0\.0\.1:(\d+)", text)}
    assert ports, "the configs no longer use 127.0.0.1: revisit the shared network namespace"
    assert ports <= set(LOCAL_PORTS), f"127.0.0.1 ports nothing in the namespace serves: {ports - set(LOCAL_PORTS)}"
    # Only nginx (in the namespace too) is published: the applications are reached through it.
    assert all_services["nginx"].get("network_mode") == f"service:{NAMESPACE_OWNER}"
    assert not published & set(LOCAL_PORTS), \
        f"published directly, not through nginx: {sorted(published & set(LOCAL_PORTS))}"


def test_prometheus_service():
    prometheus = services()["prometheus"]
    assert "--web.enable-lifecycle" in prometheus["command"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_alertmanager_gets_the_webhook_token_file_it_reads():
    alertmanager = services()["alertmanager"]
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    files = {webhook["http_config"]["authorization"]["credentials_file"]
             for receiver in config["receivers"] for webhook in receiver.get("webhook_configs", [])}
    script = "\n".join(alertmanager["command"])
    for path in files:
        assert os.path.dirname(path) in alertmanager.get("tmpfs", []), f"{path} is not on a tmpfs"
        assert f"> {path}" in script, f"the alertmanager command does not write {path}"
    assert "$$SITEWATCH_RECEIVER_TOKEN" in script, "the token is expanded by the container, not by Compose"
    assert "SITEWATCH_RECEIVER_TOKEN" in alertmanager["environment"]
    assert any(v.startswith("./alertmanager/alertmanager.yml:") for v in alertmanager["volumes"])


def test_pushgateway_persists_to_its_volume():
    pushgateway = services()["pushgateway"]
    persistence = [a for a in pushgateway["command"] if a.startswith("--persistence.file=")]
    assert persistence, "no --persistence.file"
    directory = os.path.dirname(persistence[0].split("=", 1)[1])
    assert any(v.split(":")[1] == directory and not v.startswith((".", "/")) for v in pushgateway["volumes"])


def test_grafana_service():
    grafana = services()["grafana"]
    environment = grafana["environment"]
    assert environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert environment["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GF_SECURITY_ADMIN_PASSWORD")
    targets = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert targets.get("./grafana/provisioning") == "/etc/grafana/provisioning"
    assert "./grafana/dashboards" in targets
    if not (ROOT / "grafana" / "provisioning").is_dir():
        pytest.skip("grafana/provisioning is not in the repo yet: the provisioning files are not checked")
    # The provisioning files agree with the mounts: dashboards where the provider looks, and a data source
    # URL that names a compose service (Grafana has its own network namespace: not 127.0.0.1).
    for path in (ROOT / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"):
        for provider in yaml.safe_load(path.read_text(encoding="utf-8")).get("providers", []):
            assert provider["options"]["path"] == targets["./grafana/dashboards"], \
                f"{path.name}: dashboards path differs from the ./grafana/dashboards mount"
    # The URL comes from SITEWATCH_METRICS_URL, whose default and the documented alternative (VictoriaMetrics,
    # profile "victoriametrics", in the prometheus service's namespace) must each name a compose service.
    urls = []
    for path in (ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml"):
        for source in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []):
            variable = re.fullmatch(r"\$\{(\w+)\}", source["url"])
            if not variable:
                urls.append((path.name, source["url"]))
                continue
            default = re.fullmatch(r"\$\{" + variable.group(1) + r":-(.+)\}", environment[variable.group(1)])
            assert default, f"{path.name}: {source['url']} needs a default in the grafana service's environment"
            urls.append((path.name, default.group(1)))
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    urls += [(".env.example", url) for url in re.findall(r"(http://prometheus:8428)", env_example)]
    assert any(url.endswith(":8428") for _, url in urls), "the VictoriaMetrics URL is documented in .env.example"
    for name, url in urls:
        host = re.match(r"https?://([^:/]+)", url).group(1)
        assert host in services(), f"{name}: {url} is not a compose service"


def test_the_victoriametrics_profile_runs_the_unchanged_rules_against_it():
    vm, vmalert = services()["victoriametrics"], services()["vmalert"]
    assert vm["profiles"] == ["victoriametrics"] and vmalert["profiles"] == ["victoriametrics"]
    # In the shared namespace: vmalert reaches VictoriaMetrics and Alertmanager at 127.0.0.1, nginx routes
    # the import path to it; nothing is published by these two.
    assert vm["network_mode"] == vmalert["network_mode"] == "service:prometheus"
    assert "ports" not in vm and "ports" not in vmalert
    flags = dict((arg + "=").split("=", 1)[:2] if "=" not in arg else arg.split("=", 1) for arg in vmalert["command"])
    # Its alerts carry no `alertgroup` label: the ones Prometheus fires too are then one alert.
    assert "-disableAlertgroupLabel" in flags
    assert flags["-rule"] == "/etc/prometheus/rules/*.yml"
    assert "./prometheus:/etc/prometheus:ro" in vmalert["volumes"]
    for key in ("-datasource.url", "-remoteWrite.url", "-remoteRead.url"):
        assert flags[key] == "http://127.0.0.1:8428", key
    assert flags["-notifier.url"] == "http://127.0.0.1:9093"
    vm_flags = dict(arg.split("=", 1) for arg in vm["command"])
    assert vm_flags["-httpListenAddr"] == ":8428"
    assert vm_flags["-promscrape.config"] == "/etc/prometheus/prometheus.yml"


def test_receiver_has_its_config_tokens_and_outbox_volume():
    receiver = services()["sitewatch-receiver"]
    assert receiver.get("build"), "sitewatch-receiver is built from the Dockerfile"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in receiver["volumes"]}
    config_in_container = next(a.split("=", 1)[1] for a in receiver["command"] if a.startswith("--config="))
    assert mounts[config_in_container] == "./alertmanager/receiver.yml"
    config = yaml.safe_load((ROOT / "alertmanager" / "receiver.yml").read_text(encoding="utf-8"))
    for name in env_names(config):
        assert name in receiver["environment"], f"receiver.yml reads {name}, the service does not pass it"
    outbox_dir = os.path.dirname(config["outbox"]["path"])
    assert outbox_dir in mounts and not mounts[outbox_dir].startswith((".", "/")), \
        f"the outbox directory {outbox_dir} is not on a named volume"


def test_exporter_can_ping_and_has_its_secrets():
    exporter = services()["sitewatch-exporter"]
    assert exporter.get("build"), "sitewatch-exporter is built from the Dockerfile"
    assert exporter["sysctls"]["net.ipv4.ping_group_range"] == "0 2147483647"
    assert "network_mode" not in exporter, "net.* sysctls need the container's own network namespace"
    source = next(interpolate(v).split(":")[0] for v in exporter["volumes"]
                  if v.split(":")[-2 if v.endswith((":ro", ":rw")) else -1] == "/etc/sitewatch/site.yml")
    config = yaml.safe_load((ROOT / source).read_text(encoding="utf-8"))
    for name in env_names(config):
        assert name in exporter["environment"], f"{source} reads {name}, the service does not pass it"


def _published_ports(service: dict) -> dict[int, tuple[str, int]]:
    """container port -> (host address with defaults filled in, host port)."""
    ports = {}
    for entry in service.get("ports", []):
        address, host_port, container_port = interpolate(str(entry)).rsplit(":", 2)
        ports[int(container_port.split("/")[0])] = (address, int(host_port))
    return ports


def _listen_port(service: dict) -> int:
    """The port a service's application listens on, from the URL its healthcheck asks."""
    probe = " ".join(service["healthcheck"]["test"])
    return int(re.search(r"http://127\.0\.0\.1:(\d+)/", probe).group(1))


def test_nginx_is_the_pinned_official_image_and_starts_after_the_render():
    nginx = services()["nginx"]
    repository, _, tag = nginx["image"].partition(":")
    assert repository in ("nginx", "docker.io/library/nginx"), f"nginx: not the official image: {nginx['image']}"
    assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), f"nginx: {nginx['image']} is not pinned"
    depends = nginx["depends_on"]
    assert isinstance(depends, dict), "nginx: depends_on with conditions (the long syntax)"
    assert depends["ingress-render"] == {"condition": "service_completed_successfully"}, \
        "nginx must start only after ingress-render wrote nginx.conf"
    # grafana:3000 is resolved when nginx starts: grafana's container must exist by then.
    assert "grafana" in depends
    render = services()["ingress-render"]
    assert render["restart"] == "no" and "profiles" not in render, "ingress-render runs once at every `up`"


def test_only_nginx_publishes_ports():
    config = ingress_config()
    all_services = services()
    for name in ("alertmanager", "pushgateway", "grafana", "sitewatch-receiver", "sitewatch-exporter",
                 "sitewatch-ingest", "nginx", *ONE_SHOT):
        assert "ports" not in all_services[name], f"{name}: publishes ports; only nginx's are published"
    # nginx shares prometheus's namespace, so prometheus's ports: are nginx's, exactly its listen ports.
    published = _published_ports(all_services[NAMESPACE_OWNER])
    push_port = int(config.push_listen.rsplit(":", 1)[1])
    office_ports = {int(app.listen.rsplit(":", 1)[1]) for app in config.office}
    # The plain-HTTP upload listener (push.ingest_http_listen) is published with the push port, when set.
    http_ports = {int(config.ingest_http_listen.rsplit(":", 1)[1])} if config.ingest_http_listen else set()
    assert set(published) == {push_port} | office_ports | http_ports, \
        f"{NAMESPACE_OWNER}'s ports {sorted(published)} differ from nginx's (ingress/ingress-compose.yml)"
    for port, (address, host_port) in published.items():
        assert host_port == port, f"{port} is published as {host_port}: keep the same number"
    for port in {push_port} | http_ports:
        assert published[port][0] == "0.0.0.0", "the sites push and upload from the internet"
    for port in office_ports:
        assert published[port][0] == "127.0.0.1", f"office port {port}: not on SITEWATCH_BIND_ADDRESS (127.0.0.1)"
    assert "${SITEWATCH_BIND_ADDRESS:-127.0.0.1}:" in COMPOSE_FILE.read_text(encoding="utf-8")
    for app in (*config.office, ):
        assert app.listen.startswith("0.0.0.0:"), f"office {app.name}: nginx listens on its namespace's 0.0.0.0"


def test_only_prometheus_listens_beyond_the_shared_127_0_0_1():
    """Alertmanager, the Pushgateway and the receiver are reached from outside only through nginx: not even
    Grafana or the exporter, on the project network, reach them. Grafana queries Prometheus (prometheus:9090)."""
    commands = {
        "alertmanager": "\n".join(services()["alertmanager"]["command"]),
        "pushgateway": "\n".join(services()["pushgateway"]["command"]),
        "sitewatch-receiver": "\n".join(services()["sitewatch-receiver"]["command"]),
        "sitewatch-ingest": "\n".join(services()["sitewatch-ingest"]["command"]),
    }
    for name, command in commands.items():
        port = next(p for p, service in LOCAL_PORTS.items() if service == name)
        assert f"--web.listen-address=127.0.0.1:{port}" in command, f"{name}: must listen on 127.0.0.1:{port} only"
    assert not any(a.startswith("--web.listen-address=") for a in services()["prometheus"]["command"])


def test_the_ingress_services_mount_the_compose_config_and_share_the_state_volume():
    config = ingress_config()
    all_services = services()
    state = None
    for name in ("ingress-render", "ingress"):
        service = all_services[name]
        assert service.get("build"), f"{name}: the sitewatch image is built from the Dockerfile"
        assert service["image"] == all_services["sitewatch-receiver"]["image"], f"{name}: the sitewatch image"
        assert service["entrypoint"][0] == "sitewatch-ingress"
        assert service["network_mode"] == "none", f"{name}: it needs no network"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert mounts.get(INGRESS_CONFIG_IN_CONTAINER) == "./ingress/ingress-compose.yml", \
            f"{name}: ./ingress/ingress-compose.yml is not mounted at {INGRESS_CONFIG_IN_CONTAINER}"
        assert f"./ingress/ingress-compose.yml:{INGRESS_CONFIG_IN_CONTAINER}:ro" in service["volumes"]
        source = mounts.get(str(config.folder))
        assert source and not source.startswith((".", "/")), f"{name}: {config.folder} is not on a named volume"
        assert state in (None, source), "ingress-render and ingress use different volumes"
        state = source
        arguments = service["entrypoint"][1:] + service.get("command", [])
        assert arguments[:2] == ["-c", INGRESS_CONFIG_IN_CONTAINER], f"{name}: -c {INGRESS_CONFIG_IN_CONTAINER}"
        # Root writes the root-owned volume; nginx's group makes the 0640 credential files its workers'.
        assert service["user"] == f"0:{NGINX_GID}", f"{name}: user 0:{NGINX_GID}"
    assert all_services["ingress-render"]["command"][2:] == ["render", "--no-check"], \
        "ingress-render: `render --no-check` (the sitewatch image has no nginx for `nginx -t`)"
    assert all_services["ingress"]["profiles"] == ["tools"], "the tools service is not started by `up`"
    nginx = all_services["nginx"]
    assert f"{state}:{config.folder}:ro" in nginx["volumes"], "nginx reads the ingress state read-only"
    command = nginx["command"]
    assert command[0] == "nginx" and command[command.index("-c") + 1] == str(config.nginx_conf)
    assert command[command.index("-g") + 1] == "daemon off;"
    # nginx.conf puts nginx's temporary files under <folder>/tmp: writable over the read-only volume.
    assert str(config.folder / "tmp") in nginx["tmpfs"]
    # The pid file and the logs are nginx's own, not in the read-only volume the tools share.
    assert not config.pid_file.is_relative_to(config.folder), "the pid file cannot be in the read-only volume"
    assert config.pid_file.as_posix() == "/var/run/nginx.pid", "the official image's pid file: `nginx -s reload`"
    assert config.log_folder.as_posix() == "/var/log/nginx"
    assert config.user == NGINX_USER


def test_the_compose_ingress_config_renders_with_upstreams_at_the_compose_addresses():
    from ingress import nginxconf

    config = ingress_config()
    text = nginxconf.render(config)
    all_services = services()
    # Where nginx reaches a service: 127.0.0.1 when it shares nginx's namespace (nginx is in prometheus's),
    # else the service's name on the project network.
    assert all_services["nginx"]["network_mode"] == f"service:{NAMESPACE_OWNER}"

    def address_of(name: str) -> str:
        service = all_services[name]
        shared = name == NAMESPACE_OWNER or service.get("network_mode") == f"service:{NAMESPACE_OWNER}"
        return f"{'127.0.0.1' if shared else name}:{_listen_port(service)}"

    assert set(OFFICE_SERVICES) == {app.name for app in config.office}, "every office application is served"
    servers = re.findall(r"listen (\S+) ssl;(.*?)\n    }\n", text, re.S)
    upstreams = {listen: re.search(r"proxy_pass http://([^/;]+)", body).group(1) for listen, body in servers
                 if listen != config.push_listen}
    for app in config.office:
        assert upstreams[app.listen] == address_of(OFFICE_SERVICES[app.name]), \
            f"office {app.name}: nginx proxies to {upstreams[app.listen]}, the compose service is at " \
            f"{address_of(OFFICE_SERVICES[app.name])}"
    assert list(config.pushgateways.values()) == [address_of("pushgateway")]
    assert f"server {address_of('pushgateway')};" in text
    # Profile "victoriametrics": the import path goes to the victoriametrics service.
    assert list(config.import_endpoints.values()) == [address_of("victoriametrics")]
    assert f"server {address_of('victoriametrics')};" in text and "location = /api/v1/import/prometheus" in text
    # The ingest's upload paths go to the sitewatch-ingest service.
    assert config.ingest_endpoint == address_of("sitewatch-ingest")
    assert f"server {address_of('sitewatch-ingest')};" in text
    for path in config.ingest_paths:
        assert f"location = {path} {{" in text and f"proxy_pass http://sitewatch_ingest{path}$is_args$args;" in text
    # The receiver's webhook and metrics are not served to the office.
    receiver = next(body for listen, body in servers if listen == dict((a.name, a.listen) for a in config.office)["receiver"])
    assert "location /alert/ {\n            return 403;" in receiver and "location = /metrics {\n            return 403;" in receiver
    assert f"user {NGINX_USER};" in text and f"pid {config.pid_file};" in text


def test_the_rendered_nginx_conf_passes_nginx_t(tmp_path):
    """Debian's nginx checks the rendered file, with its paths moved into tmp_path, a certificate made for
    the check, and the upstreams that only the compose network resolves (grafana) pointed at 127.0.0.1."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (Debian: apt-get install nginx): the syntax is not checked")
    from conftest import is_root

    from ingress import certificate, nginxconf
    from ingress.credentials import CredentialStore

    config = ingress_config()
    text = nginxconf.render(config)
    folder, logs, run = tmp_path / "ingress", tmp_path / "logs", tmp_path / "run"
    for path in (folder / "tmp", logs, run):
        path.mkdir(parents=True)
    text = (text.replace(str(config.folder), str(folder)).replace(str(config.log_folder), str(logs))
            .replace(str(config.pid_file), str(run / "nginx.pid")))
    for app in config.office:
        host, port = app.upstream.rsplit(":", 1)
        if not re.fullmatch(r"[\d.]+", host):
            text = text.replace(f"proxy_pass http://{app.upstream};", f"proxy_pass http://127.0.0.1:{port};")
    # Debian has no `nginx` user (the official image has); as root, the workers' user must exist.
    text = text.replace(f"user {NGINX_USER};", "user root;" if is_root() else "")
    assert "/etc/" not in text and "/var/" not in text, "a path was not moved into the tmp folder"
    certificate.self_signed(["push.example.ru"], folder / "tls" / "cert.pem", folder / "tls" / "key.pem", 1)
    CredentialStore(folder / "push.htpasswd", folder / "office.htpasswd", folder / "sites.map").ensure_files()
    conf = folder / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    result = subprocess.run([nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def _ingest_config_mount() -> tuple[str, str]:
    """(host path with its default filled in, path in the container) of sitewatch-ingest's config."""
    ingest = services()["sitewatch-ingest"]
    config_in_container = next(a.split("=", 1)[1] for a in ingest["command"] if a.startswith("--config="))
    for volume in ingest["volumes"]:
        source, target = interpolate(volume).split(":")[:2]
        if target == config_in_container:
            return source, target
    raise AssertionError(f"sitewatch-ingest: nothing is mounted at its --config {config_in_container}")


def test_the_ingest_runs_in_the_shared_namespace_with_its_config_secrets_and_storage_volume():
    from ingest.cli import _parser

    ingest = services()["sitewatch-ingest"]
    assert ingest.get("build") and ingest["image"] == services()["sitewatch-receiver"]["image"], \
        "sitewatch-ingest: the sitewatch image, built from the Dockerfile"
    assert ingest["command"][:2] == ["sitewatch-ingest", "run"]
    arguments = _parser().parse_args(ingest["command"][1:])
    # Prometheus scrapes it at prometheus.yml's 127.0.0.1 address, nginx passes the uploads there.
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    [job] = [job for job in prometheus["scrape_configs"] if job["job_name"] == "sitewatch-ingest"]
    [target] = [t for group in job["static_configs"] for t in group["targets"]]
    assert arguments.listen == target == f"127.0.0.1:{_listen_port(ingest)}" == ingress_config().ingest_endpoint
    # The config: examples/ingest.yml by default, its {env: NAME} secrets passed from .env.
    source, config_in_container = _ingest_config_mount()
    assert source == "./examples/ingest.yml" and (ROOT / source).is_file()
    raw = yaml.safe_load((ROOT / source).read_text(encoding="utf-8"))
    names = set(env_names(raw))
    assert names, "examples/ingest.yml reads no {env: NAME} secret: revisit the service's environment"
    for name in names:
        assert name in ingest["environment"], f"{source} reads {name}, the service does not pass it"
        assert name in env_example(), f".env.example lacks {name}"
    # Its SQLite file, where its storage.path puts it in the container (relative: next to the config),
    # is on a named volume, so it survives a recreation; so are its -wal and -shm files, beside it.
    stored = PurePosixPath((raw.get("storage") or {}).get("path") or "sitewatch-ingest.db")
    if not stored.is_absolute():
        stored = PurePosixPath(config_in_container).parent / stored
    volumes = {target: source for source, target in (v.split(":")[:2] for v in ingest["volumes"])
               if not source.startswith((".", "/", "$"))}
    assert any(stored.parent == PurePosixPath(target) for target in volumes), \
        f"sitewatch-ingest: its storage {stored} is not on a named volume ({volumes})"
    # The volume takes the image's /var/lib/sitewatch, owned by the image's user: the only folder it can write.
    assert str(stored.parent) == "/var/lib/sitewatch"
    # What nginx passes to it are the paths the config posts to.
    paths = {raw.get("smartstatus", {}).get("path", "/upload"), raw.get("getad", {}).get("path", "/api/submit_json")}
    assert set(ingress_config().ingest_paths) == paths


def test_the_sitewatch_image_has_the_ingest_package():
    """The sitewatch-ingest service runs sitewatch-ingest from the sitewatch image: only what the Dockerfile
    copies into the build is there."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^COPY\s+ingest\s+\./ingest\s*$", text, re.M), \
        "the Dockerfile does not COPY ingest ./ingest: sitewatch-ingest in the image cannot import ingest"


def test_the_ingests_systemd_unit_listens_where_prometheus_and_the_ingress_expect_it(tmp_path):
    import configparser
    import shlex

    from ingest.cli import _parser
    from ingress.config import load_ingress_config

    path = ROOT / "examples" / "systemd" / "sitewatch-ingest.service"
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string(path.read_text(encoding="utf-8"))
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/sitewatch-ingest") and command[1] == "run"
    arguments = _parser().parse_args(command[1:])
    assert arguments.config == "/etc/sitewatch/ingest.yml"
    assert arguments.listen == "127.0.0.1:9817" == load_ingress_config(ROOT / "ingress" / "ingress.yml").ingest_endpoint
    assert "127.0.0.1:9817" in (ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    assert service["User"] == "sitewatch" and service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a config error: a restart will not fix it
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # The storage docs/ingest.md shows (/var/lib/sitewatch/ingest.db) is in the folder systemd makes writable.
    assert service["StateDirectory"] == "sitewatch" and service["ProtectSystem"] == "strict"
    assert "path: /var/lib/sitewatch/ingest.db" in (ROOT / "docs" / "ingest.md").read_text(encoding="utf-8")
    assert service["NoNewPrivileges"] == "true" and service["PrivateDevices"] == "true"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not checked")
    # `verify` wants ExecStart's binary to exist: the venv's stands in for /opt/sitewatch's.
    binary = shutil.which("sitewatch-ingest") or str(Path(sys.executable).parent / "sitewatch-ingest")
    copy = tmp_path / path.name
    copy.write_text(path.read_text(encoding="utf-8").replace(command[0], binary), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_sitewatch_image_has_the_ingress_package():
    """ingress-render and the ingress tools run sitewatch-ingress from the sitewatch image: pyproject.toml
    installs the `ingress` package, but only what the Dockerfile copies into the build is there."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^COPY\s+ingress\s+\./ingress\s*$", text, re.M), \
        "the Dockerfile does not COPY ingress ./ingress: sitewatch-ingress in the image cannot import ingress"


def test_dockerfile_pins_its_base_and_runs_unprivileged():
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    bases = [line.split()[1] for line in instructions if line.upper().startswith("FROM ")]
    assert bases, "no FROM"
    for base in bases:
        tag = base.split("@")[0].rpartition(":")[2] if ":" in base.split("@")[0] else ""
        assert "@sha256:" in base or (tag and tag != "latest" and re.search(r"\d", tag)), \
            f"base image {base} is not pinned"
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0", "0:0"), "the image must end as a non-root USER"
    assert users[-1] == "sitewatch"
    assert "pip install --no-cache-dir ." in text
    exposed = {p for line in instructions if line.upper().startswith("EXPOSE ") for p in line.split()[1:]}
    assert {"9815", "9816"} <= exposed
    for line in instructions:
        if line.upper().startswith(("ENV ", "ARG ")):
            assert not SECRET_NAME.search(line.split(None, 1)[1].split("=")[0]), f"a secret in the image: {line}"


def test_dockerignore_keeps_secrets_and_the_venv_out():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")}
    for pattern in (".env", ".venv", ".git"):
        assert pattern in patterns, f".dockerignore lacks {pattern}"


def _compose_env() -> dict[str, str]:
    """The test's environment without the variables the compose file reads: .env.example alone decides."""
    names = set(env_example()) | {m.group(1) for m in VARIABLE.finditer(COMPOSE_FILE.read_text(encoding="utf-8"))}
    return {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}


def _docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: run `make test` (scripts/install-debs.sh installs "
                    "Debian's docker-compose), or apt-get install docker-compose")
    return binary


def test_docker_compose_config_accepts_the_file():
    result = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config"],
        cwd=ROOT, env=_compose_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(services())
    example = env_example()
    receiver = resolved["services"]["sitewatch-receiver"]
    assert receiver["environment"]["SITEWATCH_RECEIVER_TOKEN"] == example["SITEWATCH_RECEIVER_TOKEN"]


def test_docker_compose_config_refuses_missing_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    result = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), "--env-file", str(empty), "config"],
        cwd=ROOT, env=_compose_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0, "the file starts without its tokens and passwords"
    assert "SITEWATCH_" in result.stderr or "GF_SECURITY_ADMIN_PASSWORD" in result.stderr or \
        "SHOP_" in result.stderr, result.stderr
