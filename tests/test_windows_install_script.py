"""Static checks of the Windows installer (packaging/windows/): what can be checked without Windows.

No PowerShell runs here, so the script is read by a small PowerShell lexer below (strings, comments,
subexpressions, brackets) and checked for what breaks it on a till PC: the encoding Windows PowerShell 5.1
reads it in, syntax that only PowerShell 7 knows, unbalanced brackets, an undocumented parameter, a text
the technician reads that is not Russian, a cmdlet nobody reviewed, and an option of sitewatch-exporter or
sitewatch-pusher that the programs do not have (a renamed flag would make the scheduled task exit at
once, every minute, on every site).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT

WINDOWS = ROOT / "packaging" / "windows"
SCRIPT = WINDOWS / "install.ps1"
WRAPPERS = [WINDOWS / "install.cmd", WINDOWS / "uninstall.cmd"]

# Functions through which every text the script shows passes (the script's own convention), and the one
# that shows the programs' own output as it came.
SAY_FUNCTIONS = {"Say", "SayStep", "SayOk", "SayWarn", "SayError", "Fail", "Ask", "Confirm-Choice",
                 "Confirm-Problem"}
OUTPUT_FUNCTIONS = {"Say", "SayStep", "SayOk", "SayWarn", "SayError", "Show-ProgramOutput"}

# The cmdlets the script may call: each was reviewed against its documentation for Windows PowerShell 5.1
# (Microsoft.PowerShell.*, CimCmdlets) or the Windows modules (ScheduledTasks, NetSecurity). A new one
# needs the same review before it joins this list.
REVIEWED_CMDLETS = {
    # ScheduledTasks
    "Get-ScheduledTask", "Get-ScheduledTaskInfo", "Register-ScheduledTask", "Unregister-ScheduledTask",
    "Start-ScheduledTask", "Stop-ScheduledTask", "Enable-ScheduledTask", "Disable-ScheduledTask",
    "New-ScheduledTaskAction", "New-ScheduledTaskTrigger", "New-ScheduledTaskPrincipal",
    "New-ScheduledTaskSettingsSet",
    # NetSecurity
    "New-NetFirewallRule", "Remove-NetFirewallRule", "Get-NetFirewallRule",
    # services, processes
    "Get-Service", "Stop-Service", "Start-Process", "Stop-Process", "Get-CimInstance",
    # files
    "Get-ChildItem", "Get-Content", "Copy-Item", "New-Item", "Remove-Item", "Test-Path", "Join-Path",
    "Split-Path", "Set-Location", "Unblock-File",
    # utility
    "Write-Host", "Read-Host", "Get-Date", "New-TimeSpan", "Start-Sleep", "New-Object", "Get-Command",
    "Select-Object", "Sort-Object", "Where-Object", "ForEach-Object", "Out-Null", "Set-StrictMode",
}

# Latin words a Russian text of the script may contain: names of programs, files, folders, commands and
# switches the reader types or clicks (the python.org installer has no Russian), and proper names.
ALLOWED_LATIN = {
    "sitewatch", "sitewatch-exporter", "sitewatch-pusher", "site.yml", "bak", "install.cmd",
    "uninstall.cmd", "wheels", "Python", "pip", "venv", "ensurepip", "icacls", "sc.exe", "ping",
    "taskschd.msc", "encrypt", "check", "validate", "--once", "enc", "env", "file", "push", "python.exe",
    "Windows", "Server", "PowerShell", "Prometheus", "Microsoft", "Store", "ICMPv4", "LocalSubnet", "Enter",
    "-Mode", "Pusher", "Exporter", "Both", "-Config", "-Force", "-OpenFirewall", "-AllowFrom", "-Purge",
    "-Python", "-ListenAddress", "-WebConfigFile", "none",
    # keys of site.yml the technician is sent to: push: gateway:, username, and the office's ca.pem
    "gateway", "username", "ca.pem",
    "python.org",
    # the python.org installer's labels: «Windows installer (64-bit)», «Customize installation», «Next»,
    # «Install Python 3.12 for all users», «Install»
    "installer", "-bit", "Customize", "installation", "Next", "Install", "for", "all", "users",
}

KEYWORDS = {"if", "elseif", "else", "foreach", "for", "while", "do", "until", "switch", "try", "catch",
            "finally", "function", "return", "break", "continue", "throw", "exit", "param", "in", "trap",
            "filter", "begin", "process", "end", "default", "data", "dynamicparam", "class", "enum", "using"}

# What Windows PowerShell 5.1 does not know.
PS7_PARAMETERS = {"-Parallel", "-AsByteStream", "-SkipCertificateCheck", "-SkipHttpErrorCheck", "-AsHashtable",
                  "-NoProxy", "-ResponseHeadersVariable", "-StatusCodeVariable"}
PS7_COMMANDS = {"Get-Error", "Join-String", "Test-Json", "ConvertFrom-Markdown", "Get-Uptime", "Remove-Alias",
                "Clean"}
PS7_VARIABLES = {"IsWindows", "IsLinux", "IsMacOS", "IsCoreCLR", "PSStyle"}

SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
DOUBLE_QUOTES = '"\u201c\u201d\u201e'
DASHES = "\u2013\u2014\u2015"
SCOPES = {"env", "script", "global", "local", "private", "using", "variable", "function", "alias"}
CYRILLIC = re.compile(r"[А-Яа-яЁё]")


class LexError(Exception):
    pass


@dataclass
class Token:
    kind: str  # word, parameter, variable, string, number, punct, newline, comment
    text: str
    line: int
    pos: int
    depth: int = 0  # brackets open around the token, in the code it belongs to
    literal: str = ""  # a string's text, each embedded $variable or $(...) replaced by a space
    inner: list[Token] = field(default_factory=list)  # the tokens of a string's $(...) parts
    variables: list[str] = field(default_factory=list)  # variables named in a double-quoted string


class Lexer:
    """Enough of PowerShell's tokenizer for the checks below; raises LexError naming the line."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def tokens(self, until: str | None = None) -> list[Token]:
        out: list[Token] = []
        stack: list[tuple[str, int]] = []
        pairs = {")": "(", "]": "[", "}": "{"}
        while self.pos < len(self.text):
            char = self.peek()
            start, line = self.pos, self.line
            if until and char == until and not stack:
                self.pos += 1
                return out
            if char == "\n":
                out.append(Token("newline", "\n", line, start, len(stack)))
                self.line += 1
                self.pos += 1
            elif char in " \t\r\ufeff":
                self.pos += 1
            elif char == "`":  # an escape; before a line end, a continuation
                self.pos += 1
                if self.peek() == "\r":
                    self.pos += 1
                if self.peek() == "\n":
                    self.line += 1
                self.pos += 1
            elif self.text.startswith("<#", self.pos):
                end = self.text.find("#>", self.pos)
                if end < 0:
                    raise LexError(f"line {line}: a <# comment is never closed")
                body = self.text[self.pos:end + 2]
                out.append(Token("comment", body, line, start, len(stack)))
                self.line += body.count("\n")
                self.pos = end + 2
            elif char == "#":
                end = self.text.find("\n", self.pos)
                end = len(self.text) if end < 0 else end
                out.append(Token("comment", self.text[self.pos:end], line, start, len(stack)))
                self.pos = end
            elif char == "@" and self.peek(1) in ("'", '"') and self.peek(2) in ("\r", "\n"):
                out.append(self.here_string(len(stack)))
            elif char in SINGLE_QUOTES:
                out.append(self.single_string(len(stack)))
            elif char in DOUBLE_QUOTES:
                out.append(self.double_string(len(stack)))
            elif char == "$":
                out.append(self.variable(len(stack), in_string=False))
            elif char in "([{" or (char == "@" and self.peek(1) in "({"):
                opener = self.peek(1) if char == "@" else char
                self.pos += 2 if char == "@" else 1
                out.append(Token("punct", opener, line, start, len(stack)))
                stack.append((opener, line))
            elif char in ")]}":
                if not stack or stack[-1][0] != pairs[char]:
                    opened = f" (open: {stack[-1][0]!r} of line {stack[-1][1]})" if stack else ""
                    raise LexError(f"line {line}: {char!r} closes nothing{opened}")
                stack.pop()
                out.append(Token("punct", char, line, start, len(stack)))
                self.pos += 1
            elif char.isdigit():
                match = re.compile(r"\d+(?:\.\d+)?").match(self.text, self.pos)
                out.append(Token("number", match.group(), line, start, len(stack)))
                self.pos = match.end()
            elif (char == "-" or char in DASHES) and re.match(r"[A-Za-z]", self.peek(1)):
                match = re.compile(r".[A-Za-z][\w]*:?").match(self.text, self.pos)
                out.append(Token("parameter", match.group(), line, start, len(stack)))
                self.pos = match.end()
            elif re.match(r"[A-Za-z_]", char):
                match = re.compile(r"[A-Za-z_][\w\-.\\*]*").match(self.text, self.pos)
                word = match.group().rstrip(".")
                out.append(Token("word", word, line, start, len(stack)))
                self.pos = start + len(word)
            else:
                out.append(Token("punct", char, line, start, len(stack)))
                self.pos += 1
        if until:
            raise LexError(f"line {self.line}: a $( ... ) is never closed")
        if stack:
            raise LexError(f"{stack[-1][0]!r} of line {stack[-1][1]} is never closed")
        return out

    def single_string(self, depth: int) -> Token:
        start, line = self.pos, self.line
        self.pos += 1
        text = []
        while True:
            char = self.peek()
            if not char:
                raise LexError(f"line {line}: a '...' string is never closed")
            if char in SINGLE_QUOTES:
                if self.peek(1) in SINGLE_QUOTES and self.peek(1):
                    text.append("'")
                    self.pos += 2
                    continue
                self.pos += 1
                break
            if char == "\n":
                self.line += 1
            text.append(char)
            self.pos += 1
        return Token("string", self.text[start:self.pos], line, start, depth, literal="".join(text))

    def double_string(self, depth: int) -> Token:
        start, line = self.pos, self.line
        self.pos += 1
        text: list[str] = []
        inner: list[Token] = []
        variables: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise LexError(f"line {line}: a \"...\" string is never closed")
            if char == "`":
                text.append(self.peek(1))
                self.pos += 2
            elif char in DOUBLE_QUOTES:
                if self.peek(1) and self.peek(1) in DOUBLE_QUOTES:
                    text.append('"')
                    self.pos += 2
                    continue
                self.pos += 1
                break
            elif char == "$" and self.peek(1) == "(":
                self.pos += 2
                inner.extend(Lexer.sub(self, until=")"))
                text.append(" ")
            elif char == "$" and re.match(r"[\w{:]", self.peek(1)):
                token = self.variable(depth, in_string=True)
                variables.append(token.text)
                text.append(" ")
            else:
                if char == "\n":
                    self.line += 1
                text.append(char)
                self.pos += 1
        return Token("string", self.text[start:self.pos], line, start, depth, literal="".join(text),
                     inner=inner, variables=variables)

    def here_string(self, depth: int) -> Token:
        start, line = self.pos, self.line
        closing = self.peek(1) + "@"
        end = self.text.find("\n" + closing, self.pos)
        if end < 0:
            raise LexError(f"line {line}: a here-string is never closed")
        body = self.text[self.pos:end + 3]
        self.line += body.count("\n")
        self.pos = end + 3
        return Token("string", body, line, start, depth, literal=body[3:-3])

    def variable(self, depth: int, in_string: bool) -> Token:
        start, line = self.pos, self.line
        if self.peek(1) == "{":
            end = self.text.find("}", self.pos)
            self.pos = end + 1
            return Token("variable", self.text[start:self.pos], line, start, depth)
        if self.peek(1) == "(" and not in_string:
            # $( ... ) in code: its brackets are counted where it stands.
            self.pos += 1
            return Token("punct", "$", line, start, depth)
        match = re.compile(r"\$(?:([A-Za-z_]\w*):(?=([\w]?)))?([A-Za-z_]\w*|[_?^$])?").match(self.text, self.pos)
        scope, after, name = match.group(1), match.group(2), match.group(3)
        if scope is not None and (scope.lower() not in SCOPES or not after):
            raise LexError(f"line {line}: {match.group()!r} is not a variable PowerShell can read: "
                           f"a name followed by ':' is taken for a drive; write ${{{scope}}}: or $({scope}):")
        if not name:
            raise LexError(f"line {line}: a lone $ that names no variable")
        self.pos = match.end()
        return Token("variable", match.group(), line, start, depth)

    @staticmethod
    def sub(outer: Lexer, until: str) -> list[Token]:
        nested = Lexer(outer.text)
        nested.pos, nested.line = outer.pos, outer.line
        found = nested.tokens(until=until)
        outer.pos, outer.line = nested.pos, nested.line
        return found


def all_tokens(tokens: list[Token]):
    for token in tokens:
        yield token
        yield from all_tokens(token.inner)


@pytest.fixture(scope="module")
def text() -> str:
    return SCRIPT.read_bytes().decode("utf-8-sig")


@pytest.fixture(scope="module")
def tokens(text) -> list[Token]:
    return Lexer(text).tokens()


def code_tokens(tokens: list[Token]) -> list[Token]:
    return [t for t in all_tokens(tokens) if t.kind not in ("comment", "newline")]


def commands(tokens: list[Token]) -> list[Token]:
    """Words standing where a command starts: the start of a statement, after ( { = | ; or $(.

    The code inside a string's $( ... ) is a statement list of its own, read the same way."""
    found = []
    previous: Token | None = None
    flat = [t for t in tokens if t.kind != "comment"]
    for token in flat:
        found += commands(token.inner)
    for index, token in enumerate(flat):
        if token.kind == "word" and token.text.lower() not in KEYWORDS:
            at_start = previous is None or previous.kind == "newline" or (
                previous.kind == "punct" and previous.text in "({}=|;$")
            following = flat[index + 1] if index + 1 < len(flat) else None
            is_key = following is not None and following.kind == "punct" and following.text == "=" and (
                index + 2 >= len(flat) or flat[index + 2].text not in ("=",))
            is_definition = previous is not None and previous.kind == "word" and previous.text == "function"
            if at_start and not is_key and not is_definition:
                found.append(token)
        previous = token
    return found


def function_bodies(tokens: list[Token]) -> dict[str, tuple[int, int]]:
    """Each function's name and the (first, last) positions of its body's braces."""
    bodies = {}
    for index, token in enumerate(tokens):
        if token.kind == "word" and token.text == "function":
            name = tokens[index + 1].text
            opening = next(t for t in tokens[index + 2:] if t.kind == "punct" and t.text == "{")
            closing = next(t for t in tokens[tokens.index(opening) + 1:]
                           if t.kind == "punct" and t.text == "}" and t.depth == opening.depth)
            bodies[name] = (opening.pos, closing.pos)
    return bodies


def statements(tokens: list[Token]) -> list[list[Token]]:
    """Statements as a reader sees them: split at line ends, ';' and braces outside ( ) and [ ]."""
    result, current, open_count = [], [], 0
    for token in tokens:
        if token.kind == "comment":
            continue
        if token.kind == "punct" and token.text in "([":
            open_count += 1
        elif token.kind == "punct" and token.text in ")]":
            open_count -= 1
        if open_count == 0 and (token.kind == "newline" or (token.kind == "punct" and token.text in ";{}")):
            if current:
                result.append(current)
            current = []
            continue
        current.append(token)
    if current:
        result.append(current)
    return result


def help_block(text: str) -> str:
    match = re.match(r"\s*<#(.*?)#>", text, re.S)
    assert match, "install.ps1 starts with its comment-based help, <# ... #>"
    return match.group(1)


def param_names(tokens: list[Token]) -> list[str]:
    start = next(i for i, t in enumerate(tokens) if t.kind == "word" and t.text.lower() == "param")
    opening = tokens[start + 1]
    assert opening.text == "(", "param is followed by ("
    names = []
    for index in range(start + 2, len(tokens)):
        token = tokens[index]
        if token.kind == "punct" and token.text == ")" and token.depth == opening.depth:
            break
        before = [t for t in tokens[start + 1:index] if t.kind != "newline"][-1]
        if token.kind == "variable" and token.depth == opening.depth + 1 and before.text in ("]", "(", ","):
            names.append(token.text.lstrip("$"))
    return names


# --- the files' bytes -----------------------------------------------------------------------------------

def test_the_script_is_utf8_with_a_byte_order_mark_so_windows_powershell_reads_its_russian_right():
    data = SCRIPT.read_bytes()
    # Without the mark Windows PowerShell 5.1 reads a script in the ANSI code page (1251 on a Russian
    # Windows): every Cyrillic letter would come out as two wrong ones.
    assert data[:3] == b"\xef\xbb\xbf"
    data[3:].decode("utf-8")
    assert CYRILLIC.search(data.decode("utf-8-sig"))


@pytest.mark.parametrize("path", WRAPPERS, ids=[p.name for p in WRAPPERS])
def test_the_cmd_wrappers_are_ascii_with_crlf_line_ends(path):
    data = path.read_bytes()
    data.decode("ascii")  # cmd.exe reads a .cmd file in the OEM code page: any other byte is a guess
    assert b"\n" in data
    assert data.count(b"\n") == data.count(b"\r\n"), "every line ends in CRLF (cmd.exe mis-reads labels after LF)"
    assert data.count(b"\r") == data.count(b"\r\n")


def test_the_cmd_wrappers_run_the_script_beside_them_for_this_run_only_and_pass_the_arguments_on():
    install = (WINDOWS / "install.cmd").read_text(encoding="ascii")
    uninstall = (WINDOWS / "uninstall.cmd").read_text(encoding="ascii")
    assert '-NoProfile -ExecutionPolicy Bypass -File "%~dp0install.ps1" %*' in install
    assert 'set "SCRIPT=%~dp0install.ps1"' in uninstall
    assert '-NoProfile -ExecutionPolicy Bypass -File "%SCRIPT%" -Uninstall %*' in uninstall
    for wrapper in (install, uninstall):
        assert "if defined PAUSE_AT_END pause" in wrapper
        assert "CMDCMDLINE" in wrapper  # how a double-click is told from a console


def test_no_typographic_quotes_anywhere_and_no_typographic_dashes_in_the_code(text, tokens):
    # PowerShell takes ‘ ’ “ ” „ for quotes, so one inside a Russian text ends the string early; and it
    # takes – — for a minus, which in code changes the meaning. Russian texts use «» and — inside strings.
    for number, line in enumerate(text.splitlines(), 1):
        assert not any(c in SINGLE_QUOTES[1:] + DOUBLE_QUOTES[1:] for c in line), f"line {number}: use «» for quotes"
    for token in code_tokens(tokens):
        if token.kind != "string":
            assert not any(c in DASHES for c in token.text), f"line {token.line}: {token.text!r}"


# --- syntax -----------------------------------------------------------------------------------------------

def test_brackets_balance_outside_strings_and_comments(text):
    Lexer(text).tokens()  # raises, naming the line, on an unbalanced ( [ { or an unclosed string


def test_the_lexer_catches_what_these_checks_rely_on():
    for broken in ('if ($a) {\n  Say "x"\n', 'Say "not closed', "$a = @(1, 2\n", 'Say "text $name: more"',
                   "Say (Get-Date))"):
        with pytest.raises(LexError):
            Lexer(broken).tokens()
    assert Lexer('Say "ok ${name}: $env:TEMP $($x.Y) «»"').tokens()


def test_no_syntax_that_only_powershell_7_knows(tokens):
    flat = code_tokens(tokens)
    for index, token in enumerate(flat):
        following = flat[index + 1] if index + 1 < len(flat) else None
        adjacent = following is not None and following.pos == token.pos + 1
        if token.kind == "punct":
            assert token.text != "?", f"line {token.line}: '?' (a ternary, ?? or ?. , or the alias of Where-Object)"
            if adjacent and token.text + following.text in ("&&", "||"):
                raise AssertionError(f"line {token.line}: {token.text + following.text} is PowerShell 7 only")
            assert token.text != "&", f"line {token.line}: call programs through Invoke-Program, not &"
        if token.kind == "parameter":
            assert token.text not in PS7_PARAMETERS, f"line {token.line}: {token.text} is PowerShell 7 only"
        if token.kind == "variable":
            assert token.text.lstrip("$") not in PS7_VARIABLES, f"line {token.line}: {token.text}"
    for command in commands(tokens):
        assert command.text not in PS7_COMMANDS, f"line {command.line}: {command.text} is PowerShell 7 only"


def test_strict_mode_and_stop_on_errors_come_first(text):
    code = text[text.index("#>"):]
    assert re.search(r"^Set-StrictMode -Version Latest$", code, re.M)
    assert re.search(r"^\$ErrorActionPreference = 'Stop'$", code, re.M)
    assert code.index("Set-StrictMode") < code.index("function ")


def test_a_real_powershell_grammar_parses_the_script_without_errors():
    # tree-sitter's PowerShell grammar knows Windows PowerShell's syntax, not PowerShell 7's additions.
    try:
        import tree_sitter_powershell as module
        from tree_sitter import Language, Parser
    except ImportError:
        pytest.fail("tree-sitter-powershell is not installed: run 'make test', which installs the test extras")

    source = SCRIPT.read_bytes().removeprefix(b"\xef\xbb\xbf")
    tree = Parser(Language(module.language())).parse(source)
    errors = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"line {node.start_point[0] + 1}: {source[node.start_byte:node.start_byte + 60]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    assert not errors, errors


def test_no_function_has_a_local_variable_named_like_a_script_variable(tokens):
    # PowerShell's names ignore case: a local $exporterTask in a function is the script's $ExporterTask,
    # and from that line on the function reads its own value instead of the task's name.
    code = [t for t in tokens if t.kind != "comment"]
    bodies = function_bodies(code)
    headers = []  # from "function" to the body's "{": the parameters
    for index, token in enumerate(code):
        if token.kind == "word" and token.text == "function":
            headers.append((token.pos, bodies[code[index + 1].text][0]))

    def in_function(token):
        return any(start <= token.pos <= end for start, end in list(bodies.values()) + headers)

    def assigned(index):
        following = code[index + 1] if index + 1 < len(code) else None
        after = code[index + 2] if index + 2 < len(code) else None
        return following is not None and following.kind == "punct" and (
            following.text == "=" and (after is None or after.text != "=")
            or following.text in "+-" and after is not None and after.text == "=")

    script_names = set(n.lower() for n in param_names(tokens))
    for index, token in enumerate(code):
        if token.kind != "variable":
            continue
        name = token.text.lstrip("$").lower()
        if name.startswith("script:") and assigned(index):
            script_names.add(name.split(":", 1)[1])
        elif ":" not in name and not in_function(token) and assigned(index):
            script_names.add(name)
    clashes = []
    for index, token in enumerate(code):
        if token.kind != "variable" or ":" in token.text or not in_function(token):
            continue
        name = token.text.lstrip("$").lower()
        declared = index >= 1 and code[index - 1].kind == "punct" and code[index - 1].text in "](,"
        in_header = declared and any(start <= token.pos <= end for start, end in headers)
        loop_variable = index >= 2 and code[index - 1].text == "(" and code[index - 2].text == "foreach"
        if name in script_names and (assigned(index) or in_header or loop_variable):
            clashes.append(f"line {token.line}: {token.text}")
    assert not clashes, clashes


# --- help and parameters -----------------------------------------------------------------------------------

def test_every_parameter_is_documented_in_russian_and_every_documented_one_exists(text, tokens):
    help_text = help_block(text)
    documented = re.findall(r"^\s*\.PARAMETER\s+(\w+)", help_text, re.M)
    declared = param_names(tokens)
    assert declared, "the param() block declares parameters"
    assert sorted(documented) == sorted(declared)
    sections = re.split(r"^\s*\.(?=[A-Z]+)", help_text, flags=re.M)
    for section in sections:
        keyword = section.split(None, 1)[0] if section.strip() else ""
        if keyword in ("SYNOPSIS", "DESCRIPTION", "PARAMETER", "EXAMPLE"):
            assert CYRILLIC.search(section), f".{section[:40]!r} is explained in Russian"
    for keyword in ("SYNOPSIS", "DESCRIPTION", "EXAMPLE"):
        assert re.search(rf"^\s*\.{keyword}\b", help_text, re.M), f".{keyword} is there"


def test_the_lowest_python_is_the_projects_own(text):
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    required = re.search(r'requires-python\s*=\s*">=3\.(\d+)"', pyproject).group(1)
    assert re.search(rf"^\$MinimumPythonMinor = {required}$", text, re.M)


# --- what the technician reads -------------------------------------------------------------------------

def latin_words(literal: str) -> list[str]:
    literal = re.sub(r"https?://\S+", " ", literal)
    words = re.findall(r"-{0,2}[A-Za-z][A-Za-z0-9_.+\\-]*", literal)
    return [w.rstrip(".") for w in words]


def test_only_the_say_functions_write_to_the_screen_or_ask(tokens):
    bodies = function_bodies([t for t in tokens if t.kind != "comment"])
    for name in OUTPUT_FUNCTIONS | {"Ask", "Fail"}:
        assert name in bodies, f"the script defines {name}"

    def inside(token, names):
        return any(bodies[n][0] < token.pos < bodies[n][1] for n in names)

    for command in commands(tokens):
        if command.text == "Write-Host":
            assert inside(command, OUTPUT_FUNCTIONS), f"line {command.line}: Write-Host outside the Say functions"
        if command.text == "Read-Host":
            assert inside(command, {"Ask"}), f"line {command.line}: Read-Host outside Ask"
        assert command.text not in ("Write-Warning", "Write-Output", "Write-Error", "Write-Information", "echo"), (
            f"line {command.line}: {command.text} adds the host's own word (WARNING...); use SayWarn")
    throws = [t for t in code_tokens(tokens) if t.kind == "word" and t.text == "throw"]
    assert throws and all(inside(t, {"Fail"}) for t in throws), "texts are thrown only by Fail"


def test_every_text_the_technician_reads_is_russian_with_latin_only_for_names_to_type(tokens):
    flat = [t for t in tokens if t.kind != "comment"]
    starts = {t.pos for t in commands(tokens)}
    said = []
    for index, token in enumerate(flat[:-1]):
        if token.pos in starts and token.text in SAY_FUNCTIONS and flat[index + 1].kind == "string":
            said.append(flat[index + 1])
    assert len(said) > 100, "the say functions were found"
    for string in said:
        if string.literal.strip():
            assert CYRILLIC.search(string.literal), f"line {string.line}: {string.text} is not Russian"
    strange, seen = [], set()
    for string in (t for t in all_tokens(tokens) if t.kind == "string" and CYRILLIC.search(t.literal)):
        words = latin_words(string.literal)
        seen.update(words)
        strange += [f"line {string.line}: {w}" for w in words if w not in ALLOWED_LATIN]
    assert not strange, strange
    assert not ALLOWED_LATIN - seen, f"allowed but no longer used (drop them from the list): {ALLOWED_LATIN - seen}"


# --- cmdlets and programs ------------------------------------------------------------------------------------

def test_every_cmdlet_called_was_reviewed_or_is_defined_in_the_script(tokens):
    defined = set(function_bodies([t for t in tokens if t.kind != "comment"]))
    unknown = {f"{c.text} (line {c.line})" for c in commands(tokens)
               if c.text not in defined and c.text not in REVIEWED_CMDLETS}
    assert not unknown, sorted(unknown)
    used = {c.text for c in commands(tokens)}
    assert not REVIEWED_CMDLETS - used, f"reviewed but unused (drop them from the list): {REVIEWED_CMDLETS - used}"


def test_every_native_program_run_has_its_exit_code_read(text, tokens):
    bodies = function_bodies([t for t in tokens if t.kind != "comment"])
    runs = 0
    for name, (start, end) in bodies.items():
        body = text[start:end]
        for match in re.finditer(r"\$(\w+)\s*=\s*Invoke-Program\b", body):
            runs += 1
            assert re.search(rf"\${match.group(1)}\.ExitCode\s+-(eq|ne|lt|le|gt|ge)\b", body[match.end():], re.I), (
                f"{name}: ${match.group(1)} = Invoke-Program ... is never followed by a test of "
                f"${match.group(1)}.ExitCode")
    assert runs >= 10
    process = text[bodies["Invoke-Program"][0]:bodies["Invoke-Program"][1]]
    assert "ExitCode = $process.ExitCode" in process


def option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return dict(parser._option_string_actions)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_option_given_to_sitewatch_exporter_and_pusher_exists_in_their_parsers(tokens):
    from exporter import cli as exporter_cli
    from pusher import cli as pusher_cli

    exporter = exporter_cli._parser()
    parsers = {"exporter": exporter, "pusher": pusher_cli._parser(), **subcommands(exporter)}
    pip_options = pip_install_options()
    checked = set()
    for statement in statements(tokens):
        strings = [t for t in statement if t.kind == "string"]
        options = [t for t in strings if re.fullmatch(r"--[a-z][\w.-]*", t.literal)]
        if not options:
            continue
        literals = [t.literal for t in strings]
        names = {t.text.lower() for t in statement if t.kind == "variable"}
        # Get-OptionValue reads an option back from the exporter task of an earlier install: the option
        # must be one `run` has, and no value follows it here.
        lookup = any(t.kind == "word" and t.text == "Get-OptionValue" for t in statement)
        if "pip" in literals or "$common" in names:
            target = "pip"
        elif lookup:
            target = "run"
        elif literals[0] in ("run", "check", "validate"):
            target = literals[0]
        elif "$arguments" in names:
            target = "run"
        elif "$pusher" in names or "$pusherarguments" in names:
            target = "pusher"
        elif "$exporter" in names:
            target = "exporter"
        else:
            raise AssertionError(f"line {options[0].line}: whose options are these? {[o.literal for o in options]}")
        for option in options:
            if target == "pip":
                assert option.literal in pip_options, f"line {option.line}: pip install has no {option.literal}"
                continue
            actions = option_actions(parsers[target])
            assert option.literal in actions, (
                f"line {option.line}: {target} has no {option.literal} (it has {sorted(actions)})")
            if lookup:
                checked.add(("lookup", option.literal))
                continue
            position = statement.index(option)
            after = [t for t in statement[position + 1:] if not (t.kind == "punct" and t.text == ",")]
            takes_value = actions[option.literal].nargs != 0
            value = after[0] if after else None
            gives_value = value is not None and (
                value.kind == "variable" or (value.kind == "punct" and value.text in "($")
                or (value.kind == "string" and not value.literal.startswith("-")))
            assert takes_value == gives_value, (
                f"line {option.line}: {option.literal} {'needs' if takes_value else 'takes no'} value")
            checked.add((target, option.literal))
    # What the registered tasks and the checks before them rely on, and what a re-run reads back.
    assert {("run", "--config"), ("run", "--web.listen-address"), ("run", "--log.file"),
            ("run", "--web.config.file"), ("validate", "--config"), ("check", "--config"),
            ("pusher", "--config"), ("pusher", "--log.file"), ("pusher", "--once"),
            ("pusher", "--no-checks"), ("pusher", "--from"),
            ("lookup", "--web.listen-address"), ("lookup", "--web.config.file")} <= checked


def assignments(tokens: list[Token], variable: str) -> list[list[Token]]:
    """The statements that set or extend `variable` ($name = ..., $name += ...), outside functions' headers."""
    found = []
    for statement in statements(tokens):
        if (len(statement) > 2 and statement[0].kind == "variable" and statement[0].text.lower() == variable.lower()
                and statement[1].kind == "punct" and statement[1].text in "=+"):
            found.append(statement)
    return found


def test_both_registered_tasks_write_their_log_to_a_file(tokens):
    registering = [s for s in statements(tokens) if s[0].text != "function" and any(
        t.kind == "word" and t.text == "Register-AgentTask" for t in s)]
    assert len(registering) == 2
    for statement in registering:
        # Register-AgentTask <name> <program> <arguments> <description>: the arguments, written out or a variable.
        given = statement[3]
        literals = {t.literal for t in statement if t.kind == "string"}
        if given.kind == "variable":
            literals = {t.literal for s in assignments(tokens, given.text) for t in s if t.kind == "string"}
        assert "--log.file" in literals, f"line {statement[0].line}: the task is given no --log.file"


@contextlib.contextmanager
def bundle_build():
    """scripts/build_windows_bundle.py as a module."""
    spec = importlib.util.spec_from_file_location("build_windows_bundle", ROOT / "scripts" / "build_windows_bundle.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(build)
        yield build
    finally:
        del sys.modules[spec.name]


def test_the_script_reads_the_targets_the_bundle_build_verified(tokens):
    # scripts/build_windows_bundle.py writes wheels/requirements.txt; the script takes the Pythons it may
    # install for from its "# Verified for:" line, with the two patterns below (read alike by .NET and re).
    with bundle_build() as build:
        targets = [build.Target("win32", "3.10"), build.Target("win_amd64", "3.10"), build.Target("win_amd64", "3.14")]
        text = build.requirements_text(build.Wheel(Path("sitewatch.whl"), "sitewatch", "0.1.0"), {"3.10": {}}, targets)
    literals = [t.literal for t in all_tokens(tokens) if t.kind == "string"]
    line_pattern = next(x for x in literals if "Verified for" in x)
    target_pattern = next(x for x in literals if "win_amd64) cp3" in x)
    line = next(x for x in text.splitlines() if re.search(line_pattern, x))
    found = [(m.group(1), int(m.group(2))) for m in re.finditer(target_pattern, line)]
    assert found == [("win32", 10), ("win_amd64", 10), ("win_amd64", 14)]


def pip_install_options() -> set[str]:
    from pip._internal.commands import create_command

    parser = create_command("install").parser
    return {option for option in parser._long_opt}


# --- settings: the files that go with site.yml, and what happens when new settings fail ---------------------

def script_string(tokens: list[Token], variable: str) -> str:
    """The string assigned to a script variable ($Name = '...'), as PowerShell reads it."""
    for statement in assignments(tokens, variable):
        strings = [t for t in statement if t.kind == "string"]
        if len(statement) == 3 and strings:
            return strings[0].literal
    raise AssertionError(f"install.ps1 assigns no string to {variable}")


def referenced_files(tokens: list[Token], lines: list[str]) -> list[str]:
    """What Get-ReferencedFiles takes from these lines of a config, by the script's own two patterns (.NET and
    Python read them alike), before it looks at the disk: quotes off, no {env: }/enc:, no absolute path."""
    file_pattern = script_string(tokens, "$RelativeFilePattern")
    comment_pattern = script_string(tokens, "$YamlCommentPattern")
    found = []
    for line in lines:
        code = re.sub(comment_pattern, "", line, flags=re.I)
        for match in re.finditer(file_pattern, code, flags=re.I):
            value = match.group(1).strip().strip("\"'")
            if not value or value.startswith("{") or re.match(r"(?i)(env|enc):", value):
                continue
            if re.match(r"^([A-Za-z]:|[\\/])", value) or ".." in value:
                continue
            if value not in found:
                found.append(value)
    return found


def test_the_files_site_yml_names_are_found_in_block_and_flow_style(text, tokens):
    example = (ROOT / "examples" / "windows" / "pusher-site.yml").read_text(encoding="utf-8").splitlines()
    commented = [line for line in example if re.match(r"^\s*#\s*tls:\s*\{\s*ca_file:", line)]
    assert len(commented) == 1, "the example offers tls: {ca_file: ca.pem} as a commented line"
    # As shipped the CA line is a comment, and a comment names no file.
    assert referenced_files(tokens, example) == ["shop-101.password"]
    # With it switched on, as the guide tells the technician to do when the office gave a ca.pem.
    switched_on = [re.sub(r"^(\s*)#\s*", r"\1", line) if line in commented else line for line in example]
    assert sorted(referenced_files(tokens, switched_on)) == ["ca.pem", "shop-101.password"]
    # Every other way site.yml and a web config name files; a key merely ending in "file" is not one.
    lines = [
        "  tls:", "    ca_file: 'certs/office ca.pem'   # quoted, with a space",
        "password: {file: \"shop-7.password\"}", "hours_file: hours.yml", "  - targets_file: devices.yml",
        "tls_server_config: {cert_file: web.crt, key_file: web.key}", "client_ca_file: clients.pem",
        "ca_file: 'C:\\ProgramData\\sitewatch\\ca.pem'", "ca_file: C:/certs/ca.pem", "key_file: ../outside.key",
        "password: {env: SHOP_PASSWORD}", "profile: default", "# ca_file: commented.pem",
    ]
    assert referenced_files(tokens, lines) == ["certs/office ca.pem", "shop-7.password", "hours.yml", "devices.yml",
                                               "web.crt", "web.key", "clients.pem"]
    # The script uses the patterns, not a copy of them.
    body = function_text(text, tokens, "Get-ReferencedFiles")
    assert "$RelativeFilePattern" in body and "$YamlCommentPattern" in body


def function_text(text: str, tokens: list[Token], name: str) -> str:
    start, end = function_bodies([t for t in tokens if t.kind != "comment"])[name]
    return text[start:end + 1]


def main_block(text: str) -> str:
    return text[text.index("# --- Main ---"):]


def test_new_settings_are_checked_in_place_after_the_old_ones_are_kept_and_given_back_on_any_failure(text, tokens):
    install = function_text(text, tokens, "Install-Agent")
    order = ["Initialize-Config", "Suspend-AgentTasks", "Install-Program", "Install-NewConfig", "Confirm-ConfigValid",
             "Invoke-TrialRun", "Register-AgentTask", "$script:NewTasksRegistered = $true"]
    positions = [install.index(step) for step in order]
    assert positions == sorted(positions), f"Install-Agent does these in this order: {order}"
    # Copying keeps what it replaces; the old files come back unless the new tasks were registered, in the
    # finally block, which also runs after Ctrl+C (the catch block does not), and the old tasks start again.
    assert "$backup = \"$To.bak\"" in function_text(text, tokens, "Copy-ConfigFile")
    main = main_block(text)
    catch, final = main.index("} catch {"), main.index("} finally {")
    assert "Resume-SuspendedTasks" not in main[catch:final]
    finally_block = main[final:]
    assert re.search(r"if \(-not \$script:NewTasksRegistered\) \{\s*try \{ Restore-PreviousConfig \}", finally_block)
    assert finally_block.index("Restore-PreviousConfig") < finally_block.index("Resume-SuspendedTasks")


def test_a_site_yml_beside_install_cmd_that_differs_is_offered_not_ignored(text, tokens):
    select = function_text(text, tokens, "Select-ConfigSource")
    assert "Confirm-Choice 'Заменить настройки на компьютере файлом site.yml из папки установки?'" in select
    assert select.index("$script:Interactive") < select.index("Confirm-Choice"), "without a window: no question"
    assert "Ask \"$Text (д/н)\"" in function_text(text, tokens, "Confirm-Choice")


# --- modes: a re-run keeps what the last install set up -------------------------------------------------------

def test_a_re_run_keeps_the_mode_the_address_and_the_web_config_of_the_existing_tasks(text, tokens):
    install = function_text(text, tokens, "Install-Agent")
    assert "Select-Mode (Get-CurrentMode)" in install
    select = function_text(text, tokens, "Select-Mode")
    assert "'' { return $default }" in select and "как сейчас" in select
    resolve = function_text(text, tokens, "Resolve-ExporterAddress")
    assert "Get-TaskArguments $ExporterTask" in resolve
    assert "$script:ListenAddress = $keptAddress" in resolve and "$script:WebConfigFile = $keptFile" in resolve
    # No default in param(): an unset -ListenAddress must be told from an explicit :9815.
    assert re.search(r"^\s*\[string\]\$ListenAddress,$", text, re.M)


def test_both_mode_runs_the_checks_once_the_pusher_relaying_the_exporters_page(text, tokens):
    install = function_text(text, tokens, "Install-Agent")
    both = re.search(r"if \(\$withExporter\) \{[^{}]*?\$pusherArguments \+= @\('--no-checks', '--from', "
                     r"\(Get-LocalPageUrl \$port\)\)", install)
    assert both, "in Both mode the pusher gets --no-checks --from <the exporter's page>"
    assert "return \"http://127.0.0.1:$Port/metrics\"" in function_text(text, tokens, "Get-LocalPageUrl")
    assert "if ($Mode -eq 'Both') { Assert-BothModeFits $port }" in install
    fits = function_text(text, tokens, "Assert-BothModeFits")
    # A page behind a password or TLS cannot be relayed; an address without 127.0.0.1 cannot be reached.
    assert re.search(r"if \(\$WebConfigFile\) \{\s*Fail \"В режиме Both", fits)
    assert "-notin @('', '127.0.0.1', 'localhost')" in fits
    assert "Get-ListenHost" in fits and "'0.0.0.0') { return '' }" in function_text(text, tokens, "Get-ListenHost")


def test_the_exporter_example_comes_first_in_exporter_mode_and_every_example_offered_is_in_the_bundle(text, tokens):
    body = function_text(text, tokens, "Get-ExampleConfig")
    assert "if ($Mode -eq 'Exporter') { $names = @('exporter-site.yml', 'pusher-site.yml') }" in body
    assert "pos-site.yml" not in text, "the English example is not offered to the technician"
    offered = set(re.findall(r"'([\w-]+\.yml)'", body))
    with bundle_build() as build:
        shipped = build.POS_EXAMPLES
    assert offered <= set(shipped), f"offered but not in the bundle: {offered - set(shipped)}"
    for name in offered:
        assert shipped[name].is_file(), f"{shipped[name]} is missing"
        assert CYRILLIC.search(shipped[name].read_text(encoding="utf-8")), f"{name} is commented in Russian"


# --- one run at a time; a machine whose policy forbids scripts -------------------------------------------------

def test_a_second_run_at_the_same_time_is_refused(text, tokens):
    assert script_string(tokens, "$InstallMutexName") == "Global\\sitewatch-install"
    enter = function_text(text, tokens, "Enter-SingleRun")
    assert "New-Object System.Threading.Mutex($false, $InstallMutexName)" in enter
    assert "$mutex.WaitOne(0)" in enter and "catch [System.Threading.AbandonedMutexException]" in enter
    assert re.search(r"if \(-not \$owned\) \{[^}]*Fail 'Установка sitewatch уже идёт", enter)
    main = main_block(text)
    # Taken by the elevated run only (the window that asked for rights waits for it), released in finally.
    assert main.index("Restart-Elevated") < main.index("Enter-SingleRun") < main.index("Install-Agent")
    assert "Exit-SingleRun" in main[main.index("} finally {"):]
    assert "ReleaseMutex()" in function_text(text, tokens, "Exit-SingleRun")


@pytest.mark.parametrize("path", WRAPPERS, ids=[p.name for p in WRAPPERS])
def test_the_wrappers_unblock_first_and_explain_a_policy_that_forbids_scripts_in_russian(path, text):
    wrapper = path.read_text(encoding="ascii")
    lines = wrapper.splitlines()
    run = next(i for i, line in enumerate(lines) if "-ExecutionPolicy Bypass -File" in line)
    unblock = next(i for i, line in enumerate(lines) if "Unblock-File" in line and not line.startswith("rem"))
    check = next(i for i, line in enumerate(lines) if "Get-ExecutionPolicy" in line and not line.startswith("rem"))
    assert unblock < check < run
    assert "-in 'AllSigned', 'Restricted') { exit 3 }" in lines[check]
    assert lines[check + 1] == "if errorlevel 3 goto policy_forced"
    # Paths reach PowerShell through the environment: no quote in a folder name can break the command.
    assert "%~dp0" not in lines[unblock] and "$env:" in lines[unblock]
    # The explanation is the .NOTES section of install.ps1's help, found by the wrapper's own pattern.
    label = lines.index(":policy_forced")
    shown = lines[label + 1]
    pattern = re.search(r"-match '([^']+)'", shown).group(1)
    notes = re.search(pattern, text)
    assert notes, "the wrapper's pattern finds the .NOTES section"
    assert CYRILLIC.search(notes.group(1)) and "групповой политикой" in notes.group(1)
    assert "gpupdate /force" in notes.group(1) and ".PARAMETER" not in notes.group(1)
    assert lines[label + 3] == "exit /b 1"
