"""Alertmanager's routing tree, evaluated here: which receivers an alert with given labels goes to.

The worklist sends each item to the chats its alert would reach, so it needs the answer Alertmanager
itself would give (`amtool config routes test`). This module reads the `route:` section of an
Alertmanager config (the file, or `config.original` of its API, which writes the same tree without
anchors) and walks it the way Alertmanager's dispatcher does:

- a route matches when all of its matchers do: `matchers:` (strings such as `severity="critical"`,
  `alertname=~"Fn.*"`, several in one string separated by commas, values quoted or not), and the legacy
  `match:` (equality) and `match_re:` (regular expressions) maps;
- a regular expression must match the whole value, read as Go reads it (RE2 syntax: go_regex.py
  rewrites it for Python's re); a label the alert lacks has the value "";
- the children of a matching route are tried in order; the first that matches ends the search unless it
  has `continue: true`; a matching route none of whose children match is itself a result;
- a route without `receiver` takes its parent's.

It also reads which receivers post to sitewatch-receiver (`webhook_configs` URLs ending in
/alert/<route>). Anything it cannot read raises RoutingTreeError, which names the place in the config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

import yaml

from alertmanager.go_regex import python_regex

# Alertmanager's matcher grammar (pkg/labels): a label name, an operator, then the value, quoted or not.
# Since 0.27 a label name may be any UTF-8 text: its API then writes one with a space, quote, comma...
# in Go's quotes ("a b"="x"), and the value as well; others bare, as the classic grammar has them.
_MATCHER = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|[^\s{}!=~,\\"'`]+)\s*(=~|=|!=|!~)\s*(.*?)\s*$""", re.DOTALL)
_GO_ESCAPE = re.compile(r"\\(?:([0-7]{3})|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.DOTALL)
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
               "'": "'", '"': '"'}
# What a receiver's webhook posts to when it feeds one of sitewatch-receiver's routes.
_ROUTE_PATH = re.compile(r"/alert/([^/?#]+)/?$")
HIDDEN = "<secret>"  # how Alertmanager's API writes a value it keeps secret (newer versions: webhook URLs)
# Keys whose values Alertmanager's decoders add to what a merge key already put there, rather than replace.
_ADDING_LISTS = frozenset({"matchers", "source_matchers", "target_matchers"})
_MERGING_MAPS = frozenset({"match", "match_re", "source_match", "source_match_re", "target_match", "target_match_re"})
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _AlertmanagerYaml(yaml.SafeLoader):
    """YAML as Alertmanager's Go decoder reads it. A merge key (`<<: *critical`) decodes the anchored mapping
    in place, in document order, into the same route: a value written after it replaces the merged one,
    and one written before it is replaced; but matcher lists add up (`<<: *critical` then `matchers: [...]`
    keeps the anchor's matchers too) and match/match_re maps merge, because Alertmanager's decoders of
    those append to what is there. Of a list of merged mappings the first wins, as in Go."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        pairs = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                pairs.append((key_node, value_node))
                continue
            sources = list(reversed(value_node.value)) if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"expected a mapping to merge, but found {source.id}", source.start_mark)
                self.flatten_mapping(source)
                pairs.extend(source.value)
        node.value = pairs

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep)
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            adding = key in _ADDING_LISTS or key in _MERGING_MAPS
            value = self.construct_object(value_node, deep=deep or adding)
            earlier = mapping.get(key)
            if key in _ADDING_LISTS and isinstance(earlier, list) and isinstance(value, list):
                value = earlier + value
            elif key in _MERGING_MAPS and isinstance(earlier, dict) and isinstance(value, dict):
                value = {**earlier, **value}
            mapping[key] = value
        return mapping


class RoutingTreeError(ValueError):
    """The config's routing tree cannot be read; str() names where and what was expected."""


@dataclass(frozen=True)
class Matcher:
    name: str
    operator: str  # =, !=, =~, !~
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(cls, name: str, operator: str, value: str, where: str) -> Matcher:
        regex = None
        if operator in ("=~", "!~"):
            try:
                regex = re.compile(python_regex(value))
            except (ValueError, re.error) as err:  # re.error is a ValueError too; both say where in the value
                raise RoutingTreeError(f"{where}: the regular expression {value!r} does not compile: {err}") from None
        return cls(name, operator, value, regex)

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.operator == "=":
            return value == self.value
        if self.operator == "!=":
            return value != self.value
        found = self._regex is not None and self._regex.fullmatch(value) is not None
        return found if self.operator == "=~" else not found


def parse_matchers(text: str, where: str = "matchers") -> list[Matcher]:
    """The matchers of one `matchers:` entry: `a="1"`, `{a="1", b=~"x|y"}`, `a=1` (Alertmanager's syntax)."""
    body = text.strip()
    if body.startswith("{"):
        body = body[1:]
    if body.endswith("}"):
        body = body[:-1]
    tokens: list[str] = []
    token: list[str] = []
    quoted = escaped = False
    for char in body:  # split at commas outside quotes, as Alertmanager does
        if char == "," and not quoted:
            tokens.append("".join(token))
            token = []
            continue
        if char == '"':
            if escaped:
                escaped = False
            else:
                quoted = not quoted
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(char)
    if "".join(token).strip():
        tokens.append("".join(token))
    return [_parse_matcher(part, where) for part in tokens]


def _parse_matcher(text: str, where: str) -> Matcher:
    found = _MATCHER.match(text)
    if found is None:
        raise RoutingTreeError(f"{where}: {text.strip()!r} is not a matcher such as severity=\"critical\"")
    name, operator, raw = found.groups()
    if name.startswith('"'):  # Go's quoting, of the name and then of the value
        if not (len(raw) >= 2 and raw[0] == raw[-1] == '"'):
            raise RoutingTreeError(f"{where}: {text.strip()!r} has a quoted label name but no quoted value")
        return Matcher.build(_go_unquoted(name[1:-1], text, where), operator, _go_unquoted(raw[1:-1], text, where),
                             where)
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    value: list[str] = []
    escaped = False
    for index, char in enumerate(raw):
        if escaped:
            escaped = False
            value.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
            continue
        if char == "\\" and index < len(raw) - 1:
            escaped = True
        elif char == '"':
            if not quoted or index < len(raw) - 1:
                raise RoutingTreeError(f"{where}: {text.strip()!r} has a double quote inside its value")
            quoted = False
        else:
            value.append(char)
    if quoted:
        raise RoutingTreeError(f"{where}: {text.strip()!r} opens a quote it does not close")
    return Matcher.build(name, operator, "".join(value), where)


def _go_unquoted(body: str, text: str, where: str) -> str:
    """The inside of a Go-quoted string (strconv.Quote) as the text it stands for."""
    data = bytearray()
    at = 0
    for escape in _GO_ESCAPE.finditer(body):
        data += body[at:escape.start()].encode("utf-8", "surrogatepass")
        octal, byte, short, long, char = escape.groups()
        if octal or byte:
            data.append(int(octal, 8) if octal else int(byte, 16))
        elif short or long:
            data += chr(int(short or long, 16)).encode("utf-8", "surrogatepass")
        elif char in _GO_ESCAPES:
            data += _GO_ESCAPES[char].encode()
        else:
            raise RoutingTreeError(f"{where}: {text.strip()!r} has an escape \\{char} Go's quoting does not have")
        at = escape.end()
    if '"' in _GO_ESCAPE.sub("", body):
        raise RoutingTreeError(f"{where}: {text.strip()!r} has a double quote inside a quoted part")
    data += body[at:].encode("utf-8", "surrogatepass")
    return data.decode("utf-8", "replace")


@dataclass
class Route:
    """One node of the tree, with its receiver already inherited."""

    receiver: str
    matchers: list[Matcher]
    carry_on: bool  # Alertmanager's `continue`
    children: list[Route]
    where: str  # its place in the config, for messages: route.routes[2].routes[0]

    def match(self, labels: dict[str, str]) -> list[Route]:
        """The routes an alert ends in below (and including) this one, in Alertmanager's order."""
        if not all(matcher.matches(labels) for matcher in self.matchers):
            return []
        found: list[Route] = []
        for child in self.children:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.carry_on:
                break
        return found or [self]


class RoutingTree:
    """The `route:` tree and `receivers:` of one Alertmanager config."""

    def __init__(self, root: Route, receivers: dict[str, dict[str, Any]]):
        self.root = root
        self.receivers = receivers

    @classmethod
    def from_yaml(cls, text: str, source: str = "the Alertmanager config") -> RoutingTree:
        try:
            config = yaml.load(text, Loader=_AlertmanagerYaml)  # anchors and merge keys resolved as Go does
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" line {mark.line + 1}:" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err)
            raise RoutingTreeError(f"{source}:{line} not YAML: {problem}") from None
        return cls.from_config(config, source)

    @classmethod
    def from_config(cls, config: Any, source: str = "the Alertmanager config") -> RoutingTree:
        if not isinstance(config, dict) or not isinstance(config.get("route"), dict):
            raise RoutingTreeError(f"{source}: expected a mapping with a 'route' section (Alertmanager's config)")
        receivers: dict[str, dict[str, Any]] = {}
        for index, receiver in enumerate(config.get("receivers") or []):
            if not isinstance(receiver, dict) or not isinstance(receiver.get("name"), str):
                raise RoutingTreeError(f"{source}: receivers[{index}]: expected a receiver with a name")
            receivers[receiver["name"]] = receiver
        root_config = config["route"]
        receiver = root_config.get("receiver")
        if not isinstance(receiver, str) or not receiver:
            raise RoutingTreeError(f"{source}: route.receiver: expected the name of the default receiver")
        root = _route(root_config, receiver, "route", source)
        for route in _walk(root):
            if route.receiver not in receivers:
                raise RoutingTreeError(f"{source}: {route.where}: receiver {route.receiver!r} is not one of the "
                                       f"receivers ({', '.join(receivers) or 'none defined'})")
        return cls(root, receivers)

    def receivers_for(self, labels: dict[str, str]) -> list[str]:
        """The receivers an alert with `labels` is sent to, in the order `amtool config routes test` lists them."""
        return [route.receiver for route in self.root.match(labels)]

    def webhook_routes(self, known_routes: Iterable[str]) -> dict[str, set[str]]:
        """Receiver name -> the sitewatch-receiver routes its webhooks post to (POST .../alert/<route>).

        Only routes in `known_routes` count. A receiver whose webhook URLs the API hides (newer
        Alertmanagers write them as <secret>, and a `url_file` shows no URL) is taken by its name, as the
        receiver's bot commands do: `duty` or `telegram-duty` posts to the route `duty`."""
        known = set(known_routes)
        found: dict[str, set[str]] = {}
        for name, receiver in self.receivers.items():
            routes: set[str] = set()
            hidden = False
            for webhook in receiver.get("webhook_configs") or []:
                url = webhook.get("url") if isinstance(webhook, dict) else None
                if not isinstance(url, str) or url.strip() == HIDDEN:  # hidden, or read from a url_file
                    hidden = True
                    continue
                route = route_of_url(url)
                if route in known:
                    routes.add(route)
            if not routes and hidden:
                routes = route_named(name, known)
            if routes:
                found[name] = routes
        return found


    def hidden_receivers(self) -> set[str]:
        """Receivers with a webhook whose URL the API does not show (<secret>, or a url_file)."""
        return {name for name, receiver in self.receivers.items()
                for webhook in receiver.get("webhook_configs") or []
                if isinstance(webhook, dict) and (not isinstance(webhook.get("url"), str)
                                                  or webhook["url"].strip() == HIDDEN)}


def route_of_url(url: str) -> str | None:
    """The sitewatch-receiver route a webhook URL posts to (".../alert/duty" -> "duty"), else None."""
    try:
        path = urlsplit(url.strip()).path
    except ValueError:
        return None
    found = _ROUTE_PATH.search(path)
    return found.group(1) if found else None


def _route(config: Any, inherited: str, where: str, source: str) -> Route:
    if not isinstance(config, dict):
        raise RoutingTreeError(f"{source}: {where}: expected a route (a mapping)")
    receiver = config.get("receiver") or inherited
    if not isinstance(receiver, str):
        raise RoutingTreeError(f"{source}: {where}.receiver: expected a receiver's name")
    matchers: list[Matcher] = []
    for index, entry in enumerate(config.get("matchers") or []):
        if not isinstance(entry, str):
            raise RoutingTreeError(f"{source}: {where}.matchers[{index}]: expected a string such as "
                                   f"'severity=\"critical\"'")
        matchers.extend(parse_matchers(entry, f"{source}: {where}.matchers[{index}]"))
    for key, operator in (("match", "="), ("match_re", "=~")):
        legacy = config.get(key) or {}
        if not isinstance(legacy, dict):
            raise RoutingTreeError(f"{source}: {where}.{key}: expected a mapping of label names to values")
        for name, value in legacy.items():
            if not isinstance(name, str) or not name:
                raise RoutingTreeError(f"{source}: {where}.{key}: {name!r} is not a label name")
            matchers.append(Matcher.build(name, operator, "" if value is None else str(value),
                                          f"{source}: {where}.{key}.{name}"))
    carry_on = config.get("continue", False)
    if not isinstance(carry_on, bool):
        raise RoutingTreeError(f"{source}: {where}.continue: expected true or false")
    children = config.get("routes") or []
    if not isinstance(children, list):
        raise RoutingTreeError(f"{source}: {where}.routes: expected a list of routes")
    return Route(receiver, matchers, carry_on,
                 [_route(child, receiver, f"{where}.routes[{index}]", source) for index, child in enumerate(children)],
                 where)


def _walk(route: Route) -> Iterable[Route]:
    yield route
    for child in route.children:
        yield from _walk(child)


def route_named(receiver: str, known_routes: Iterable[str]) -> set[str]:
    """The route an Alertmanager receiver is named after (`duty` or `telegram-duty` posts to `duty`), for
    when its webhook URL cannot be read: the longest name that fits, so `telegram-kodeks-spb` is
    `kodeks-spb`, not `spb`; none when no route fits."""
    named = sorted((route for route in known_routes if receiver == route or receiver.endswith("-" + route)), key=len)
    return set(named[-1:])
