"""Alertmanager's routing tree evaluated in Python (alertmanager/routing_tree.py), against Alertmanager's own
answer: every label set here, fixed or made up by hypothesis over the labels the configs match on, is
routed by `amtool config routes test --verify.receivers=<our answer>`, which fails on any difference.
The worklist's RouteFinder is then read from a real Alertmanager's API (config.original) and must agree
with the file it was started with. Go's regular expressions (RE2: flags anywhere, Unicode case folding,
ASCII classes, Go's own escapes, POSIX and Unicode classes) are matched by amtool and here alike.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertmanager.routing_tree import RoutingTree, RoutingTreeError, parse_matchers, route_of_url
from alertmanager.worklist import RouteFinder, WorklistUnavailable, for_routes
from alertmanager.workitem import WorkItem
from conftest import ROOT, free_port

ALERTMANAGER_YML = ROOT / "alertmanager" / "alertmanager.yml"
RECEIVER_ROUTES = {"duty", "kkt", "info", "pos", "kodeks-spb", "watchdog"}  # alertmanager/receiver.yml's routes

# A tree with what the shipped config does not use: legacy match/match_re, negative matchers, several
# matchers in one string, braces, unquoted values, an escaped quote, nested `continue`, inherited
# receivers, a deeper anchor and a merge key that overrides.
FEATURES_YML = r"""
route:
  receiver: fallback
  routes:
    - match: {team: pos}
      receiver: pos
      continue: true
      routes:
        - match_re: {alertname: 'Fn.*'}
          receiver: pos-fn
        - matchers: ['severity!="info"', 'site!~"test-.*"']
          receiver: pos-urgent
          continue: true
        - matchers: ['{severity=~"crit.*|warn.*", site="shop-01"}']
    - &quiet
      matchers: [severity=info, 'alertname!~Kkt.*']
      receiver: quiet
      routes:
        - matchers: ['note="say \"hi\""']
          receiver: quoted
    - <<: *quiet
      matchers: ['severity="info"']
      receiver: info-kkt
    - matchers: ['distributor=~""', 'alertname=~"Site.*"']
      receiver: no-partner
      continue: true
    - matchers: ['alertname=~"Site.*"']
      receiver: sites
receivers:
  - {name: fallback, webhook_configs: [{url: 'http://127.0.0.1:9816/alert/duty'}]}
  - {name: pos, webhook_configs: [{url: 'http://127.0.0.1:9816/alert/pos'}]}
  - {name: pos-fn, webhook_configs: [{url: 'http://127.0.0.1:9816/alert/kkt'}]}
  - {name: pos-urgent}
  - {name: quiet, webhook_configs: [{url: 'http://127.0.0.1:9816/alert/info/'}]}
  - {name: quoted}
  - {name: info-kkt, webhook_configs: [{url: 'http://127.0.0.1:9816/alert/kkt'}]}
  - {name: no-partner, webhook_configs: [{url: 'http://127.0.0.1:9816/alert/nowhere'}]}
  - {name: sites, webhook_configs: [{url: 'http://127.0.0.1:9816/alert/duty'}, {url: 'http://other.example/hook'}]}
"""


def amtool() -> str:
    path = shutil.which("amtool") or "/usr/bin/amtool"
    if not Path(path).exists():
        pytest.fail("amtool is not installed: run 'make test', which installs Debian's prometheus-alertmanager")
    return path


def cli_label(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def assert_amtool_agrees(config: Path, tree: RoutingTree, labels: dict[str, str]) -> None:
    ours = ",".join(tree.receivers_for(labels))
    args = [cli_label(name, value) for name, value in sorted(labels.items()) if value]
    result = subprocess.run([amtool(), "config", "routes", "test", f"--config.file={config}",
                             f"--verify.receivers={ours}", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{labels}: we say {ours!r}, amtool says {result.stdout.strip()!r} {result.stderr}"


@pytest.fixture(scope="module")
def features_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("routing") / "features.yml"
    path.write_text(FEATURES_YML, encoding="utf-8")
    check = subprocess.run([amtool(), "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    return path


SHIPPED = RoutingTree.from_yaml(ALERTMANAGER_YML.read_text(encoding="utf-8"))
FEATURES = RoutingTree.from_yaml(FEATURES_YML)

SHIPPED_CASES = [
    {"alertname": "Watchdog"},
    {"alertname": "Watchdog", "distributor": "pos-service", "severity": "critical"},
    {"alertname": "FnExpiring", "severity": "warning", "site": "shop-01"},
    {"alertname": "FnExpiring", "severity": "critical", "distributor": "pos-service"},
    {"alertname": "KktDataStale", "severity": "info", "distributor": "kodeks-spb"},
    {"alertname": "PcUnreachable", "severity": "critical", "distributor": "kodeks-spb"},
    {"alertname": "KodeksLicenceExpiring", "severity": "info"},
    {"alertname": "CheckDown", "severity": "warning"},
    {"alertname": "SiteNotReporting", "severity": "critical", "distributor": "other"},
    {"alertname": "xFnExpiring", "severity": "warning"},  # the regex is anchored: Fn.* must start the name
    {"alertname": "Fn", "severity": "info"},
    {"severity": "critical"},
    {},
]


@pytest.mark.parametrize("labels", SHIPPED_CASES, ids=lambda labels: ",".join(f"{k}={v}" for k, v in labels.items()))
def test_the_shipped_tree_routes_as_amtool_does(labels):
    assert_amtool_agrees(ALERTMANAGER_YML, SHIPPED, labels)


def test_a_wrong_answer_is_caught_by_amtool():
    """The cross-check can fail: amtool refuses a receiver list that is not its own."""
    result = subprocess.run([amtool(), "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}",
                             "--verify.receivers=telegram-duty", 'alertname="FnExpiring"', 'severity="warning"'],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert SHIPPED.receivers_for({"alertname": "FnExpiring", "severity": "warning"}) == ["telegram-kkt"]


def test_the_shipped_tree_sends_a_distributors_alert_to_its_chat_and_ours():
    labels = {"alertname": "FnExpiring", "severity": "critical", "distributor": "pos-service", "site": "shop-01"}
    assert SHIPPED.receivers_for(labels) == ["telegram-pos", "telegram-kkt"]
    assert SHIPPED.receivers_for({"alertname": "PortDown", "severity": "info"}) == ["telegram-info"]


ALERTNAMES = st.sampled_from(["Watchdog", "FnExpiring", "FnUnsentDocuments", "KktDataStale", "KktLicenceExpiring",
                              "PcUnreachable", "CheckDown", "SiteNotReporting", "SiteNotBackAfterOpening",
                              "KodeksMainPageError", "Fn", "Kkt", "xFn", "fnExpiring", ""])
VALUES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzAFKS-_.0123456789 ", max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alertname=ALERTNAMES,
       severity=st.sampled_from(["critical", "warning", "info", "", "Critical", "information"]),
       distributor=st.one_of(st.sampled_from(["kodeks-spb", "pos-service", "pos", "kodeks-spb2", ""]), VALUES),
       site=st.one_of(st.just("shop-01"), VALUES),
       extra=st.dictionaries(st.sampled_from(["client", "check", "kkt", "telegram_route"]), VALUES, max_size=2))
def test_made_up_alerts_are_routed_by_the_shipped_tree_as_amtool_does(alertname, severity, distributor, site, extra):
    labels = {"alertname": alertname, "severity": severity, "distributor": distributor, "site": site, **extra}
    assert_amtool_agrees(ALERTMANAGER_YML, SHIPPED, labels)


FEATURE_CASES = [
    {"team": "pos", "alertname": "FnExpiring", "severity": "critical"},
    {"team": "pos", "alertname": "CheckDown", "severity": "critical", "site": "shop-01"},
    {"team": "pos", "alertname": "CheckDown", "severity": "warning", "site": "test-1"},
    {"team": "pos", "alertname": "CheckDown", "severity": "info", "site": "shop-01"},
    {"severity": "info", "alertname": "PortDown", "note": 'say "hi"'},
    {"severity": "info", "alertname": "KktDataStale"},
    {"alertname": "SiteNotReporting"},
    {"alertname": "SiteNotReporting", "distributor": "north"},
    {"team": "Pos", "alertname": "x"},
]


@pytest.mark.parametrize("labels", FEATURE_CASES, ids=lambda labels: ",".join(f"{k}={v}" for k, v in labels.items()))
def test_legacy_matchers_negations_continue_and_merge_keys_route_as_amtool_does(features_file, labels):
    assert_amtool_agrees(features_file, FEATURES, labels)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(team=st.sampled_from(["pos", "Pos", "", "pos2"]),
       alertname=st.sampled_from(["FnExpiring", "Fn", "KktDataStale", "SiteX", "Site", "PortDown", "xSite", ""]),
       severity=st.sampled_from(["critical", "crit", "warning", "warn-x", "info", "", "infoo"]),
       site=st.sampled_from(["shop-01", "test-", "test-01", "xtest-1", ""]),
       distributor=st.sampled_from(["", "north"]),
       note=st.sampled_from(["", 'say "hi"', "say hi", 'say \\"hi\\"']))
def test_made_up_alerts_are_routed_by_the_feature_tree_as_amtool_does(features_file, team, alertname, severity, site,
                                                                       distributor, note):
    labels = {"team": team, "alertname": alertname, "severity": severity, "site": site,
              "distributor": distributor, "note": note}
    assert_amtool_agrees(features_file, FEATURES, labels)


def test_receivers_posting_to_the_receiver_name_its_known_routes_only():
    assert SHIPPED.webhook_routes(RECEIVER_ROUTES) == {
        "telegram-duty": {"duty"}, "telegram-kkt": {"kkt"}, "telegram-info": {"info"},
        "telegram-kodeks-spb": {"kodeks-spb"}, "telegram-pos": {"pos"}, "watchdog": {"watchdog"}}
    # The feature tree: a trailing slash is the same route; a route the receiver does not know is none;
    # a receiver without webhooks posts nowhere; another host's hook is not the receiver's.
    assert FEATURES.webhook_routes({"duty", "pos", "kkt", "info"}) == {
        "fallback": {"duty"}, "pos": {"pos"}, "pos-fn": {"kkt"}, "quiet": {"info"}, "info-kkt": {"kkt"},
        "sites": {"duty"}}
    assert route_of_url("https://receiver.example.ru/alert/duty?x=1") == "duty"
    assert route_of_url("http://127.0.0.1:9816/alerts") is None


def test_hidden_webhook_urls_are_taken_by_the_receivers_name():
    """Newer Alertmanagers write webhook URLs in their API as <secret>: the receiver's name tells the route."""
    hidden = ALERTMANAGER_YML.read_text(encoding="utf-8")
    for route in RECEIVER_ROUTES:
        hidden = hidden.replace(f"http://127.0.0.1:9816/alert/{route}\n", "<secret>\n")
    assert hidden.count("url: <secret>") == len(RECEIVER_ROUTES)
    assert RoutingTree.from_yaml(hidden).webhook_routes(RECEIVER_ROUTES) == SHIPPED.webhook_routes(RECEIVER_ROUTES)


def test_a_url_file_or_hidden_url_names_the_route_whose_name_fits_longest():
    """Alertmanager 0.26's url_file shows no URL at all; with routes `spb` and `kodeks-spb` the receiver
    telegram-kodeks-spb posts to kodeks-spb only (an item sent to both chats would be said twice)."""
    tree = RoutingTree.from_yaml("""
route: {receiver: telegram-kodeks-spb, routes: [{receiver: spb, matchers: [a=1]}, {receiver: other, matchers: [a=2]}]}
receivers:
  - {name: telegram-kodeks-spb, webhook_configs: [{url_file: /etc/alertmanager/kodeks-spb.url}]}
  - {name: spb, webhook_configs: [{url: <secret>}, {url: 'http://127.0.0.1:9816/elsewhere'}]}
  - {name: other, webhook_configs: [{url_file: /etc/alertmanager/other.url}]}
""")
    assert tree.webhook_routes({"spb", "kodeks-spb", "duty"}) == {"telegram-kodeks-spb": {"kodeks-spb"}, "spb": {"spb"}}


def test_the_bot_commands_name_a_receiver_s_route_by_the_same_rule(tmp_path):
    """/alerts finds an alert's chat by its receivers: before a webhook has shown which route a receiver
    posts to, telegram-kodeks-spb is the route kodeks-spb, not spb too (its alerts would be shown in the
    spb chat)."""
    from alertmanager.chatcommands import ChatCommands
    from alertmanager.config import load_receiver_config
    from receiver_kit import write_receiver_config

    config = load_receiver_config(write_receiver_config(tmp_path, "http://127.0.0.1:9", routes="""
  spb:
    bot: main
    chat_id: -1001000000001
  kodeks-spb:
    bot: main
    chat_id: -1001000000002
""", extra="""
commands:
  alertmanager_url: http://127.0.0.1:9
  allowed_chats: [-1001000000001]
"""))
    commands = ChatCommands(config, config.commands, api=None, receiver_routes=set)
    routes = commands._routes_of  # noqa: SLF001 (the rule itself, without an Alertmanager to list alerts)
    assert routes({"labels": {}, "receivers": [{"name": "telegram-kodeks-spb"}]}, set()) == {"kodeks-spb"}
    assert routes({"labels": {}, "receivers": [{"name": "spb"}]}, set()) == {"spb"}
    assert routes({"labels": {}, "receivers": [{"name": "telegram-kodeks-spb"}]},
                  {("telegram-kodeks-spb", "spb")}) == {"spb"}  # what a webhook showed wins


def test_a_receiver_known_by_no_name_is_logged_as_taking_its_items_off_the_lists(caplog):
    """With Alertmanager 0.26+ every webhook URL is <secret>: a receiver not named after its route routes
    its sites' items nowhere, which the log must say, naming it."""
    text = ALERTMANAGER_YML.read_text(encoding="utf-8").replace("http://127.0.0.1:9816/alert/pos\n", "<secret>\n")
    text = text.replace("telegram-pos", "partner-chat")
    with caplog.at_level("WARNING", logger="sitewatch.receiver"):
        finder = RouteFinder.from_yaml(text, RECEIVER_ROUTES)
    assert finder.routes_for({"alertname": "CheckDown", "severity": "warning", "distributor": "pos-service"}) == \
        {"duty"}
    (said,) = [record.getMessage() for record in caplog.records]
    assert said.startswith("event=worklist_receivers_unnamed receivers=partner-chat routes=duty,info,kkt,kodeks-spb,")
    assert "name it after its route (telegram-<route>)" in said


@pytest.mark.parametrize("text, expected", [
    ('severity="critical"', [("severity", "=", "critical")]),
    ("{a=1, b!~\"x,y\"}", [("a", "=", "1"), ("b", "!~", "x,y")]),
    (r'note="say \"hi\" \\ \n"', [("note", "=", 'say "hi" \\ \n')]),
    ("  site != shop-01 ", [("site", "!=", "shop-01")]),
    ('re=~"a|b"', [("re", "=~", "a|b")]),
    # Alertmanager 0.27 and later write a label name that is not a classic one in Go's quotes, its value too
    (r'"a b"="x\ty \u00e9 \"q\""', [("a b", "=", 'x\ty é "q"')]),
    (r'{"a,b"!~"x", клиент="Аптека"}', [("a,b", "!~", "x"), ("клиент", "=", "Аптека")]),
])
def test_matchers_are_read_as_alertmanager_reads_them(text, expected):
    assert [(m.name, m.operator, m.value) for m in parse_matchers(text)] == expected


@pytest.mark.parametrize("text, expected", [
    ('route: {receiver: a, routes: [{matchers: ["sev erity=x"]}]}\nreceivers: [{name: a}]',
     "route.routes[0].matchers[0]: 'sev erity=x' is not a matcher"),
    ('route: {receiver: a, routes: [{matchers: [\'site=~"(?=a)"\']}]}\nreceivers: [{name: a}]',
     "route.routes[0].matchers[0]: the regular expression '(?=a)' does not compile: a group Go does not know at position 0"),
    ('route: {receiver: a, routes: [{}, {matchers: [\'a="x"y"\']}]}\nreceivers: [{name: a}]',
     "route.routes[1].matchers[0]: 'a=\"x\"y\"' has a double quote inside its value"),
    ('route: {receiver: a, routes: [{match_re: {a: "("}}]}\nreceivers: [{name: a}]',
     "route.routes[0].match_re.a: the regular expression '(' does not compile"),
    ('route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]',
     "route.routes[0]: receiver 'b' is not one of the receivers (a)"),
    ("route: [", "line 1: not YAML"),
    ("receivers: []", "expected a mapping with a 'route' section"),
])
def test_a_tree_that_cannot_be_read_is_refused_with_its_place(text, expected):
    with pytest.raises(RoutingTreeError) as caught:
        RoutingTree.from_yaml(text, "am.yml")
    assert str(caught.value).startswith("am.yml")
    assert expected in str(caught.value)


# --- RouteFinder: from a running Alertmanager ------------------------------------------------------------

def test_the_route_finder_reads_the_running_alertmanagers_tree(alertmanager):
    url = alertmanager(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    finder = RouteFinder.fetch(url, RECEIVER_ROUTES, timeout=10)
    from_file = RouteFinder.from_yaml(ALERTMANAGER_YML.read_text(encoding="utf-8"), RECEIVER_ROUTES)
    for labels in SHIPPED_CASES:
        assert finder.routes_for(labels) == from_file.routes_for(labels), labels
    assert finder.routes_for({"alertname": "FnExpiring", "severity": "warning", "distributor": "pos-service"}) == \
        {"pos", "kkt"}
    # An alert's own telegram_route wins, as in the receiver; one naming no known route does not.
    assert finder.routes_for({"alertname": "PortDown", "severity": "warning", "telegram_route": "kkt"}) == {"kkt"}
    assert finder.routes_for({"alertname": "PortDown", "severity": "warning", "telegram_route": "nope"}) == {"duty"}


def test_items_are_given_to_the_routes_their_alerts_reach():
    finder = RouteFinder.from_yaml(ALERTMANAGER_YML.read_text(encoding="utf-8"), RECEIVER_ROUTES)
    now = 1_800_000_000.0
    fn = WorkItem("fn_expiry", "shop-01", {"distributor": "pos-service", "kkt": "1", "fn": "2"}, due=now + 20 * 86400)
    pc = WorkItem("check_down", "shop-02", {"check": "pc", "type": "ping"}, since=now - 2 * 86400)
    licence = WorkItem("kodeks_licence", "shop-03", {"check": "kodeks"}, due=now + 20 * 86400)
    own = WorkItem("catalog_error", "shop-04", {"check": "kodeks", "catalog": "/docs", "telegram_route": "pos"},
                   reason="main_page")
    split = for_routes([fn, pc, licence, own], finder, now)
    assert set(split) == RECEIVER_ROUTES  # every route, those with nothing to do too
    assert split["kkt"] == [fn] and split["pos"] == [fn, own]
    assert split["duty"] == [pc]  # PcUnreachable is critical
    assert split["info"] == [licence]  # 20 days before a Кодекс licence ends, its alert is for information
    assert split["watchdog"] == [] and split["kodeks-spb"] == []
    # Closer to its end the same licence is a warning, which goes to the duty chat.
    assert for_routes([licence], finder, now + 15 * 86400)["duty"] == [licence]


def test_an_alertmanager_that_cannot_be_asked_makes_the_worklist_unavailable():
    port = free_port()
    with pytest.raises(WorklistUnavailable) as caught:
        RouteFinder.fetch(f"http://admin:hunter2secret@127.0.0.1:{port}", RECEIVER_ROUTES, timeout=5)
    assert "cannot be reached" in str(caught.value) and "hunter2secret" not in str(caught.value)
    assert caught.value.russian.startswith("⚠️ Список дел не разослан: сервер оповещений недоступен.")


# --- Go's regular expressions --------------------------------------------------------------------------

# Regexes Alertmanager takes (Go's RE2 syntax) where Python's re would refuse them, or read them otherwise:
# a flag group inside the expression, case folding of Cyrillic and of the Kelvin sign but not of the
# Turkish dotless ı, ASCII-only \w and \b, POSIX and Unicode classes, \z, \Q...\E, \x{...}, a{,2} as text,
# (?U), and repetition of an assertion.
GO_REGEXES = [
    "(?i)порт.*", "Касса (?i)мИтСу", "(?i:shop)-\\d+", "(?i)[^k]", "(?i)\\W", "(?i)i", "(?i)ß", "(?i)[а-я]+",
    "\\w+", "\\bab\\b.*", ".*\\Bb", "[[:alpha:]]+", "[[:^digit:]]+", "\\pL+", "\\p{Lu}.*", "\\PL", "\\p{Cyrillic}+",
    "a\\z", "\\Qa.b\\E", "\\x{44F}+", "\\101", "a{,2}", "(?U)a+", "(?s).", ".", "^*a$+", "[\\d-]+", "[]a]+", "[^]a]",
    "(?P<n>x)|y", "(?i)a(?-i)b", "(?m)a$", "(Fn|Kkt).*", "shop-(0[1-5]|1\\d)\\.(a|b)", "\\.\\-\\*", "(?:a|b)+c?",
    "(?)x",
]
GO_VALUES = st.text(alphabet=list("aAbBkKSsiIıİßẞяЯпортПОРТмитсуМИТСУё-.*0123456789_ \t\n{},") + ["\u212a", "ſ"],
                    min_size=1, max_size=6)


@pytest.fixture(scope="module")
def go_regex_file(tmp_path_factory) -> Path:
    """One route per regex, each with `continue`, so one amtool call says which of them match a value."""
    routes = "\n".join(f"    - {{receiver: r{index}, continue: true, matchers: ['v=~{cli_label('', regex)[1:]}']}}"
                       for index, regex in enumerate(GO_REGEXES))
    receivers = "\n".join(f"  - {{name: r{index}}}" for index in range(len(GO_REGEXES)))
    path = tmp_path_factory.mktemp("go-regex") / "alertmanager.yml"
    path.write_text(f"route:\n  receiver: none\n  routes:\n{routes}\nreceivers:\n  - {{name: none}}\n{receivers}\n",
                    encoding="utf-8")
    check = subprocess.run([amtool(), "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    return path


@pytest.mark.parametrize("value", ["ПОРТ 1", "Касса мИтСу", "Касса МИТСУ", "SHOP-12", "\u212a", "K", "ı", "İ", "I", "ẞ",
                                   "ab", "a b", "я", "Я", "a.b", "aaa", "a{,2}", "a\n", "a", "]", "-1-", "x", "Fnx"])
def test_go_regular_expressions_match_as_in_alertmanager(go_regex_file, value):
    tree = RoutingTree.from_yaml(go_regex_file.read_text(encoding="utf-8"))
    assert_amtool_agrees(go_regex_file, tree, {"v": value})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=GO_VALUES)
def test_made_up_values_meet_go_regular_expressions_as_in_alertmanager(go_regex_file, value):
    tree = RoutingTree.from_yaml(go_regex_file.read_text(encoding="utf-8"))
    assert_amtool_agrees(go_regex_file, tree, {"v": value})


def test_the_running_alertmanager_writes_go_regular_expressions_so_they_are_read_back_alike(alertmanager,
                                                                                          go_regex_file):
    """config.original is Alertmanager's own rewriting of the file (its escapes): read back, the same tree."""
    url = alertmanager(go_regex_file.read_text(encoding="utf-8"))
    routes = {f"r{index}" for index in range(len(GO_REGEXES))}
    finder = RouteFinder.fetch(url, routes, timeout=10)
    from_file = RoutingTree.from_yaml(go_regex_file.read_text(encoding="utf-8"))
    for value in ["ПОРТ 1", "Касса МИТСУ", "\u212a", "ı", "a.b", "a\n", "[]", 'a"b\\', "aa"]:
        assert finder.tree.receivers_for({"v": value}) == from_file.receivers_for({"v": value}), value
