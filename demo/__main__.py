"""`make demo` (python -m demo): the whole stack on loopback, from Debian's binaries, until Ctrl-C.

Simulated devices and pages, a one-shot check table, then the Pushgateway, Alertmanager,
sitewatch-receiver, Prometheus, a central sitewatch-exporter and sitewatch-pusher, each with the project's
own config (demo.configs shortens the waits and moves the ports). The receiver prints each Telegram
message on this console, or posts it to a real chat when SITEWATCH_DEMO_BOT_TOKEN and
SITEWATCH_DEMO_CHAT_ID are set.

DEMO_SECONDS=N stops the demo by itself after N seconds. Everything it starts it stops, by pid, and the
network namespace it made it removes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from alertmanager.prometheus_query import PrometheusError, instant_query
from demo import configs
from demo.devices import ATOL_PORT, KODEKS_PORT, MITSU_PORT, SHTRIH_PORT, WEB, Devices
from demo.processes import StartFailed, Supervisor
from exporter import lockedfile
from ingress import certificate, nginxconf
from ingress.config import IngressConfig, load_ingress_config
from ingress.credentials import Credential, CredentialStore
from simulators import kodeks

ROOT = configs.ROOT
NAMESPACE = "sitewatch-demo"  # its silent address, 198.18.143.99, is demo-branch's PC
VOID_NETNS = ROOT / "scripts" / "void-netns.sh"
BINARIES = {"Prometheus": "prometheus", "Alertmanager": "prometheus-alertmanager",
            "Pushgateway": "prometheus-pushgateway", "nginx": "nginx"}
VM_BINARIES = {"VictoriaMetrics": "victoria-metrics", "vmalert": "vmalert", "Alertmanager": "prometheus-alertmanager",
               "nginx": "nginx"}
SHOP = "demo-shop"  # examples/demo.yml's site, pushed through nginx with its own credential
OFFICE_USER = "demo"
DEVICE_PORTS = {WEB[1]: "the demo's web pages", KODEKS_PORT: "the fake Кодекс server",
                MITSU_PORT: "the Mitsu simulator", ATOL_PORT: "the ATOL simulator",
                SHTRIH_PORT: "the Shtrih-M simulator"}
WORKLIST_PATIENCE = 90.0  # seconds the start-up worklist waits for the first register readings
STOPPING = threading.Event()  # the demo is stopping: the start-up worklist is not sent


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything."""


def stop_on_signal(signum, frame) -> None:
    raise Stop()


def say(text: str = "") -> None:
    print(text, flush=True)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def find_binaries(backend: str) -> dict[str, str]:
    found, missing = {}, []
    for name, binary in (VM_BINARIES if backend == "victoriametrics" else BINARIES).items():
        path = shutil.which(binary) or next((f"{folder}/{binary}" for folder in ("/usr/bin", "/usr/sbin")
                                             if Path(f"{folder}/{binary}").exists()), None)
        if path:
            found[name] = path
        else:
            missing.append(binary)
    if missing:
        raise SystemExit(f"demo: {', '.join(missing)} not found: run 'make demo', which installs Debian's "
                         f"packages (scripts/install-debs.sh)")
    return found


def busy_ports(ports: configs.Ports) -> list[str]:
    wanted = {**DEVICE_PORTS, **{port: name for name, port in vars(ports).items()}}
    busy = []
    for port, what in sorted(wanted.items()):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"127.0.0.1:{port} ({what})")
    return busy


def one_shot_checks(shop: Path, central: Path, env: dict) -> None:
    for config in (shop, central):
        shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
        say(f"== sitewatch-exporter check --config {shown}")
        subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config", str(config)], cwd=ROOT,
                       env=env, stdin=subprocess.DEVNULL)
        say()


def start_stack(supervisor: Supervisor, work: Path, ports: configs.Ports, shop: Path, central: Path,
                telegram: configs.Telegram, env: dict, backend: str) -> None:
    binaries = find_binaries(backend)
    token = configs.webhook_token(work)
    python = [sys.executable, "-m"]
    if backend == "pushgateway":
        supervisor.start("pushgateway", [
            binaries["Pushgateway"], f"--web.listen-address=127.0.0.1:{ports.pushgateway}",
            f"--persistence.file={work / 'pushgateway.db'}", "--persistence.interval=1m"],
            ready_url=ports.url("pushgateway") + "/-/ready")
    supervisor.start("alertmanager", [
        binaries["Alertmanager"], f"--config.file={configs.alertmanager(work, ports, token)}",
        f"--storage.path={work / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{ports.alertmanager}",
        "--cluster.listen-address=", f"--web.external-url={ports.url('alertmanager')}"],
        ready_url=ports.url("alertmanager") + "/-/ready")
    receiver_env = dict(env)
    if telegram.dry_run:
        receiver_env[configs.BOT_TOKEN_ENV] = "123456:dry-run-sends-nothing"
    supervisor.start("receiver", [
        *python, "alertmanager.cli", "run", "--config", str(configs.receiver(work, ports, token, telegram, central)),
        f"--web.listen-address=127.0.0.1:{ports.receiver}", *(["--dry-run"] if telegram.dry_run else [])],
        ready_url=ports.url("receiver") + "/-/ready", env=receiver_env, cwd=ROOT, stdout_to_console=True)
    if backend == "victoriametrics":
        start_victoriametrics(supervisor, work, ports, central, binaries)
    else:
        supervisor.start("prometheus", [
            binaries["Prometheus"], f"--config.file={configs.prometheus(work, ports, central)}",
            f"--storage.tsdb.path={work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{ports.prometheus}", "--web.enable-lifecycle"],
            ready_url=ports.url("prometheus") + "/-/ready")
    supervisor.start("exporter", [
        *python, "exporter.cli", "--config", str(central), "--web.listen-address", f"127.0.0.1:{ports.exporter}"],
        ready_url=ports.url("exporter") + "/-/ready", env=env, cwd=ROOT)
    ingress = start_ingress(supervisor, work, ports, binaries["nginx"], backend)
    destination = (["--import-url", f"https://127.0.0.1:{ports.ingress_push}/api/v1/import/prometheus"]
                   if backend == "victoriametrics" else ["--gateway", f"https://127.0.0.1:{ports.ingress_push}"])
    pusher = supervisor.start("pusher", [
        *python, "pusher.cli", "--config", str(shop),
        *destination, "--ca-file", str(ingress.certificate),
        "--basic-auth-user", f"site/{SHOP}", "--basic-auth-password-file", str(work / "shop.password"),
        "--interval", configs.PUSH_INTERVAL], env=env, cwd=ROOT)
    time.sleep(1)
    if pusher.process.poll() is not None:
        raise StartFailed(f"sitewatch-pusher exited with {pusher.process.returncode}:\n{pusher.tail()}")
    threading.Thread(target=send_first_worklist, args=(work, ports, receiver_env), name="demo-worklist",
                     daemon=True).start()


def send_first_worklist(work: Path, ports: configs.Ports, env: dict) -> None:
    """The morning worklist once, as soon as Prometheus holds the registers' readings, so a newcomer sees it
    without waiting for 08:30 (the receiver sends it from its outbox like any message)."""
    deadline = time.monotonic() + WORKLIST_PATIENCE
    while time.monotonic() < deadline and not STOPPING.is_set():
        if _has_readings(ports):
            break
        STOPPING.wait(1.0)
    else:
        if not STOPPING.is_set():
            say(f"demo: no register readings in Prometheus after {WORKLIST_PATIENCE:g}s; "
                "the worklist is sent without them")
    if STOPPING.is_set():
        return
    subprocess.run([sys.executable, "-m", "alertmanager.cli", "worklist", "--config",
                    str(work / "receiver" / "receiver.yml"), "--send"], cwd=ROOT, env=env,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _has_readings(ports: configs.Ports) -> bool:
    try:
        return bool(instant_query(ports.url("prometheus"), "count(sitewatch_fn_expiry_timestamp_seconds)", timeout=2))
    except PrometheusError:
        return False


def start_victoriametrics(supervisor: Supervisor, work: Path, ports: configs.Ports, central: Path,
                          binaries: dict[str, str]) -> None:
    """VictoriaMetrics on Prometheus' port (the office side and every query work unchanged), scraping
    what the demo's prometheus.yml lists, and vmalert evaluating the same shortened rules against it."""
    prometheus_yml = configs.prometheus(work, ports, central, with_pushgateway=False)
    supervisor.start("victoriametrics", [
        binaries["VictoriaMetrics"], f"-storageDataPath={work / 'victoriametrics-data'}",
        f"-httpListenAddr=127.0.0.1:{ports.prometheus}", f"-promscrape.config={prometheus_yml}",
        "-promscrape.config.strictParse=false", "-search.latencyOffset=2s", "-loggerLevel=WARN"],
        ready_url=ports.url("prometheus") + "/-/ready")
    supervisor.start("vmalert", [
        binaries["vmalert"], f"-rule={work / 'prometheus' / 'rules' / '*.yml'}",
        f"-datasource.url={ports.url('prometheus')}", f"-remoteWrite.url={ports.url('prometheus')}",
        f"-remoteRead.url={ports.url('prometheus')}", f"-notifier.url={ports.url('alertmanager')}",
        f"-evaluationInterval={configs.SCRAPE_INTERVAL}", f"-httpListenAddr=127.0.0.1:{ports.vmalert}",
        f"-external.url={ports.url('vmalert')}", "-disableAlertgroupLabel", "-loggerLevel=WARN"],
        ready_url=ports.url("vmalert") + "/-/ready")


def start_ingress(supervisor: Supervisor, work: Path, ports: configs.Ports, nginx: str,
                  backend: str) -> IngressConfig:
    """nginx with a self-signed certificate, a credential for the shop's pusher and one for the office."""
    ingress = load_ingress_config(configs.ingress(work, ports, backend))
    for folder in (ingress.folder / "tmp", ingress.log_folder):
        folder.mkdir(parents=True, exist_ok=True)
    certificate.self_signed(["127.0.0.1", "localhost"], ingress.certificate, ingress.key)
    store = CredentialStore(ingress.push_credentials, ingress.office_credentials, ingress.site_map)
    store.ensure_files()
    store.register_site(SHOP, "pos-service")
    for name, credential in (("shop", Credential("site", SHOP)), ("office", Credential("office", OFFICE_USER))):
        lockedfile.replace(work / f"{name}.password", store.issue(credential) + "\n", new_mode=0o600)
    ingress.nginx_conf.write_text(nginxconf.render(ingress), encoding="utf-8")
    supervisor.start("nginx", [nginx, "-c", str(ingress.nginx_conf), "-g", "daemon off;"],
                     ready_port=ports.ingress_push)
    return ingress


def _opens(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def prometheus_ui(base: str) -> str:
    """The alerts page of the Prometheus that runs: /alerts, or /classic/alerts on Debian's 2.42 build."""
    for path in ("/alerts", "/classic/alerts"):
        if _opens(base + path):
            return base + path
    return base + "/graph"


def alertmanager_ui(base: str) -> str:
    """Alertmanager's web UI where the build has one; Debian's has none, so its API and amtool instead."""
    if _opens(base + "/"):
        return base + "/#/alerts"
    return (f"{base}/api/v2/alerts   (this build has no web UI: its API, `amtool --alertmanager.url={base} "
            f"alert query`, and the silence buttons in the chat)")


def show_urls(ports: configs.Ports, work: Path, telegram: configs.Telegram, with_branch: bool,
              backend: str) -> None:
    sites = "demo-office" + (", demo-branch" if with_branch else "")
    say("== the stack is up (all on 127.0.0.1):")
    say(f"   nginx (ingress)     https://127.0.0.1:{ports.ingress_push}   (sitewatch-pusher pushes demo-shop here, "
        f"TLS and the site's own credential); office side, user {OFFICE_USER}, password in "
        f"{work / 'office.password'}: Prometheus https://127.0.0.1:{ports.ingress_prometheus}/, Alertmanager "
        f"https://127.0.0.1:{ports.ingress_alertmanager}/, receiver https://127.0.0.1:{ports.ingress_receiver}/ "
        f"(self-signed: {work / 'ingress' / 'tls' / 'cert.pem'})")
    if backend == "victoriametrics":
        say(f"   VictoriaMetrics     {ports.url('prometheus')}/vmui/   (demo-shop's pushes, every "
            f"{configs.PUSH_INTERVAL} through nginx, and the scrapes; the Prometheus API at the same address)")
        say(f"   vmalert             {ports.url('vmalert')}/   (the project's rules, evaluated against it)")
    else:
        say(f"   Prometheus          {prometheus_ui(ports.url('prometheus'))}   (alerts; rules, targets and "
            f"graphs beside it)")
    say(f"   Alertmanager        {alertmanager_ui(ports.url('alertmanager'))}")
    if backend == "pushgateway":
        say(f"   Pushgateway         {ports.url('pushgateway')}/   (demo-shop, pushed every "
            f"{configs.PUSH_INTERVAL} through nginx)")
    say(f"   sitewatch-receiver  {ports.url('receiver')}/   (status page; metrics at /metrics)")
    say(f"   sitewatch-exporter  {ports.url('exporter')}/metrics   (central exporter: {sites})")
    say(f"   configs and logs    {work}")
    say(f"== add a device to the central exporter (it reloads by itself): sitewatch-exporter targets add "
        f"--config {work / 'demo-central.yml'} 127.0.0.1 my-pc")
    say(f"== waits are shortened for the demo: rules' for: ÷{configs.FOR_DIVISOR}, group_wait "
        f"{configs.ROUTING_TIMINGS['group_wait']}, a site is silent after {configs.SILENT_AFTER}s")
    if telegram.dry_run:
        say("== Telegram: dry run, each message is printed below (set SITEWATCH_DEMO_BOT_TOKEN and "
            "SITEWATCH_DEMO_CHAT_ID to post to a real chat)")
    else:
        say(f"== Telegram: every route posts to chat {telegram.chat_id}")
    say("== first messages: the Watchdog at once, then within about two minutes "
        + ("demo-branch's PC, " if with_branch else "") + "the ФН of till-2 expiring and Кодекс's broken "
        "catalog page; stop the pusher (kill its pid) and SiteNotReporting follows")
    say("== Grafana is not packaged by Debian: see the boards with the compose stack "
        "(cp .env.example .env; docker compose up -d; http://localhost:3000, docs/production.md)")


def main() -> int:
    backend = configs.backend()
    ports = configs.Ports()
    busy = busy_ports(ports)
    if busy:
        say("demo: these ports are taken (another demo still running?): " + ", ".join(busy))
        return 1
    telegram = configs.Telegram.from_environment()
    # Set explicitly: a shell that starts the demo in the background makes it ignore SIGINT otherwise.
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    env = {**os.environ, "KODEKS_DEMO_PASSWORD": kodeks.PASSWORD, "PYTHONUNBUFFERED": "1"}
    with_branch = is_root()
    devices = Devices()
    supervisor = None
    with tempfile.TemporaryDirectory(prefix="sitewatch-demo-") as folder:
        work = Path(folder)
        try:
            if with_branch:
                subprocess.run([str(VOID_NETNS), "up", NAMESPACE], check=True, stdout=subprocess.DEVNULL)
            else:
                say("(not root: leaving out demo-branch, whose unreachable PC needs a network namespace)")
            devices.start()
            say(f"== simulated devices: {devices.describe()}\n")
            shop, central = configs.shop_site(work), configs.central_sites(work, with_branch)
            one_shot_checks(shop, central, env)
            supervisor = Supervisor(work / "logs")
            say(f"== backend: {backend} ({configs.BACKEND_ENV}=pushgateway or victoriametrics)\n")
            start_stack(supervisor, work, ports, shop, central, telegram, env, backend)
            show_urls(ports, work, telegram, with_branch, backend)
            seconds = float(os.environ.get("DEMO_SECONDS", "0") or 0)
            say("== press Ctrl-C to stop" if not seconds else f"== stopping in {seconds:g}s")
            deadline = time.monotonic() + seconds if seconds else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
                for daemon in supervisor.exited():
                    if daemon.name == "pusher":
                        continue  # stopping it is part of the demo: SiteNotReporting follows
                    say(f"demo: {daemon.name} exited with {daemon.process.returncode}:\n{daemon.tail()}")
                    return 1
            return 0
        except Stop:
            return 0
        except StartFailed as err:
            say(f"demo: {err}")
            return 1
        finally:
            STOPPING.set()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            stopped = len(supervisor.daemons) if supervisor else 0
            killed = supervisor.stop_all() if supervisor else []
            devices.stop()
            if with_branch:
                subprocess.run([str(VOID_NETNS), "down", NAMESPACE], check=False)
            say(f"\n== demo stopped: {stopped} processes" + (f" ({', '.join(killed)} had to be killed)"
                                                             if killed else "")
                + (", network namespace removed" if with_branch else ""))


if __name__ == "__main__":
    sys.exit(main())
