"""Secret values in configs, for real: ``{env: NAME}``, ``{file: path}`` and ``enc:`` values made by the
``sitewatch-exporter encrypt`` command, resolved by `load_config` with every way of giving the key.

A resolved secret is revealed only by `reveal()`; its repr, the error messages of a failed load, log lines
(through `RedactingFilter`) and the output of the one-shot ``check`` command never contain it. Every test
uses its own random secret, as the redactor's registry is process-wide.
"""

from __future__ import annotations

import io
import logging
import os
import secrets as random_secrets
import socket
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from exporter.config import Config, ConfigError, load_config
from exporter.redaction import MASK, RedactingFilter, redact
from exporter.secrets import SecretValue

PASSWORD_PATH = "sites[0].checks[0].http.basic_auth.password"


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEWATCH_KEY", raising=False)
    monkeypatch.delenv("SITEWATCH_KEY_FILE", raising=False)


def unique_secret() -> str:
    return "pw-" + random_secrets.token_hex(12)


def cli(*args: str, stdin: str = "", cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``sitewatch-exporter`` as a subprocess, without any key from this process's environment."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("SITEWATCH_KEY", "SITEWATCH_KEY_FILE")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "exporter.cli", *args], input=stdin, cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=30)


def http_config(password: str, url: str = "http://127.0.0.1:9/admin", top: str = "") -> str:
    """A one-site, one-check config whose http check logs in as `monitor` with `password` (YAML text)."""
    return top + textwrap.dedent(f"""\
        sites:
          - id: shop-1
            checks:
              - name: admin-page
                http:
                  url: {url}
                  basic_auth:
                    username: monitor
                    password: {password}
    """)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def password_of(config: Config) -> SecretValue:
    secret = config.checks()[0].options["basic_auth"]["password"]
    assert isinstance(secret, SecretValue)
    return secret


def assert_revealed_only_on_purpose(config: Config, plain: str) -> None:
    secret = password_of(config)
    assert secret.reveal() == plain
    assert plain not in repr(secret)
    assert plain not in str(secret)
    assert plain not in repr(config)
    assert secret.path == PASSWORD_PATH


def load_error(path: Path, key_file: str | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, key_file)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 9: {PASSWORD_PATH}: "), message  # the line of `password:`
    return message


@dataclass(frozen=True)
class Keys:
    key_file: Path  # the key the enc: value was made with
    other_key_file: Path  # a second, unrelated key
    secret: str
    enc: str  # the enc: value of `secret`, printed by 'sitewatch-exporter encrypt'


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    key_file, other_key_file = folder / "site.key", folder / "other.key"
    for file in (key_file, other_key_file):
        made = cli("encrypt", "--new-key", str(file))
        assert made.returncode == 0, made.stderr
        assert str(file) in made.stdout
    secret = unique_secret()
    encrypted = cli("encrypt", "--key-file", str(key_file), stdin=secret + "\n")
    assert encrypted.returncode == 0, encrypted.stderr
    enc = encrypted.stdout.strip()
    assert enc.startswith("enc:") and secret not in enc
    return Keys(key_file, other_key_file, secret, enc)


# --- the three ways of writing a secret ---------------------------------------------------------------------


def test_env_secret_is_read_from_the_named_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = unique_secret()
    monkeypatch.setenv("SHOP1_ADMIN_PASSWORD", plain)
    config = load_config(write(tmp_path / "site.yml", http_config("{env: SHOP1_ADMIN_PASSWORD}")))
    assert_revealed_only_on_purpose(config, plain)
    assert repr(password_of(config)) == "<secret from environment variable SHOP1_ADMIN_PASSWORD>"


def test_file_secret_is_read_relative_to_the_config_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = unique_secret()
    write(tmp_path / "conf" / "secrets" / "admin.txt", plain + "\n")
    config_file = write(tmp_path / "conf" / "site.yml", http_config("{file: secrets/admin.txt}"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(config_file)
    assert_revealed_only_on_purpose(config, plain)  # the trailing newline is not part of the secret


def test_enc_value_is_decrypted_with_the_key_file_given_to_load_config(tmp_path: Path, keys: Keys) -> None:
    config = load_config(write(tmp_path / "site.yml", http_config(keys.enc)), key_file=str(keys.key_file))
    assert_revealed_only_on_purpose(config, keys.secret)
    assert keys.enc not in repr(password_of(config))


def test_enc_value_is_decrypted_with_the_key_in_sitewatch_key(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITEWATCH_KEY", keys.key_file.read_text())
    config = load_config(write(tmp_path / "site.yml", http_config(keys.enc)))
    assert_revealed_only_on_purpose(config, keys.secret)


def test_enc_value_is_decrypted_with_the_key_file_in_sitewatch_key_file(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITEWATCH_KEY_FILE", str(keys.key_file))
    config = load_config(write(tmp_path / "site.yml", http_config(keys.enc)))
    assert_revealed_only_on_purpose(config, keys.secret)


def test_enc_value_is_decrypted_with_the_top_level_key_file_relative_to_the_config(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "conf" / "keys" / "site.key", keys.key_file.read_text())
    config_file = write(tmp_path / "conf" / "site.yml", http_config(keys.enc, top="key_file: keys/site.key\n"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert_revealed_only_on_purpose(load_config(config_file), keys.secret)


def test_validate_command_decrypts_with_its_key_file_option(tmp_path: Path, keys: Keys) -> None:
    config_file = write(tmp_path / "site.yml", http_config(keys.enc))
    result = cli("validate", "--config", str(config_file), "--key-file", str(keys.key_file))
    assert result.returncode == 0, result.stderr
    assert "valid, 1 site(s), 1 check(s)" in result.stdout
    assert keys.secret not in result.stdout + result.stderr


def test_key_file_option_wins_over_the_sitewatch_key_environment_variable(tmp_path: Path, keys: Keys) -> None:
    config_file = write(tmp_path / "site.yml", http_config(keys.enc))
    result = cli("validate", "--config", str(config_file), "--key-file", str(keys.key_file),
                 env={"SITEWATCH_KEY": keys.other_key_file.read_text().strip()})
    assert result.returncode == 0, result.stderr


# --- secrets that cannot be read ---------------------------------------------------------------------------


def test_unset_environment_variable_is_named_with_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP1_ADMIN_PASSWORD", raising=False)
    config_file = write(tmp_path / "site.yml", http_config("{env: SHOP1_ADMIN_PASSWORD}"))
    assert load_error(config_file).endswith("the environment variable SHOP1_ADMIN_PASSWORD is not set")


def test_empty_environment_variable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP1_ADMIN_PASSWORD", "")
    config_file = write(tmp_path / "site.yml", http_config("{env: SHOP1_ADMIN_PASSWORD}"))
    assert load_error(config_file).endswith("the secret from environment variable SHOP1_ADMIN_PASSWORD is empty")


def test_missing_secret_file_is_named_with_the_path(tmp_path: Path) -> None:
    config_file = write(tmp_path / "conf" / "site.yml", http_config("{file: secrets/admin.txt}"))
    message = load_error(config_file)
    assert f"cannot read the secret file {tmp_path / 'conf' / 'secrets' / 'admin.txt'}: " in message
    assert "No such file or directory" in message


def test_enc_value_with_the_wrong_key_is_refused_without_the_secret(tmp_path: Path, keys: Keys) -> None:
    config_file = write(tmp_path / "site.yml", http_config(keys.enc))
    message = load_error(config_file, key_file=str(keys.other_key_file))
    assert message.endswith("the enc: value cannot be decrypted with this key (wrong key or damaged value)")
    assert keys.secret not in message
    assert keys.other_key_file.read_text().strip() not in message
    assert keys.key_file.read_text().strip() not in message


def test_damaged_enc_value_is_refused_without_the_secret(tmp_path: Path, keys: Keys) -> None:
    middle = len(keys.enc) // 2
    damaged = keys.enc[:middle] + ("A" if keys.enc[middle] != "A" else "B") + keys.enc[middle + 1:]
    config_file = write(tmp_path / "site.yml", http_config(damaged))
    message = load_error(config_file, key_file=str(keys.key_file))
    assert message.endswith("the enc: value cannot be decrypted with this key (wrong key or damaged value)")
    assert keys.secret not in message


def test_enc_value_without_any_key_says_how_to_give_one(tmp_path: Path, keys: Keys) -> None:
    config_file = write(tmp_path / "site.yml", http_config(keys.enc))
    message = load_error(config_file)
    assert ("enc: values need a key: set SITEWATCH_KEY, or SITEWATCH_KEY_FILE, --key-file or the config's "
            "key_file") in message
    assert "sitewatch-exporter encrypt --new-key FILE" in message
    assert keys.secret not in message


def test_missing_key_file_is_named(tmp_path: Path, keys: Keys) -> None:
    config_file = write(tmp_path / "site.yml", http_config(keys.enc))
    message = load_error(config_file, key_file=str(tmp_path / "no.key"))
    assert f"cannot read the key file {tmp_path / 'no.key'}: No such file or directory" in message


def test_invalid_key_in_sitewatch_key_is_refused_without_showing_it(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITEWATCH_KEY", "not-a-fernet-key-0123456789")
    message = load_error(write(tmp_path / "site.yml", http_config(keys.enc)))
    assert "the environment variable SITEWATCH_KEY does not hold a valid key" in message
    assert "not-a-fernet-key-0123456789" not in message


@pytest.mark.parametrize("written", ["{env: ''}", "{vault: admin}", "{env: A, file: b}", "[a, b]"])
def test_secret_in_an_unknown_form_lists_the_accepted_forms(tmp_path: Path, written: str) -> None:
    message = load_error(write(tmp_path / "site.yml", http_config(written)))
    assert "expected a secret written as {env: NAME}, {file: path} or enc:..." in message


def test_numeric_password_never_appears_in_the_load_error(tmp_path: Path) -> None:
    config_file = write(tmp_path / "site.yml", http_config("84736251"))
    try:
        config = load_config(config_file)
    except ConfigError as err:
        assert PASSWORD_PATH in str(err)
        assert "84736251" not in str(err)
    else:
        assert password_of(config).reveal() == "84736251"


# --- sitewatch-exporter encrypt ------------------------------------------------------------------------------


def test_new_key_is_a_valid_key_in_a_file_only_the_owner_can_read(tmp_path: Path) -> None:
    key_file = tmp_path / "site.key"
    result = cli("encrypt", "--new-key", str(key_file))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_bytes().strip())  # raises if it is not a key


def test_new_key_refuses_to_overwrite_an_existing_file(tmp_path: Path) -> None:
    key_file = write(tmp_path / "site.key", "the key everything was encrypted with\n")
    result = cli("encrypt", "--new-key", str(key_file))
    assert result.returncode == 2
    assert f"{key_file} exists already; not overwriting a key" in result.stderr
    assert key_file.read_text() == "the key everything was encrypted with\n"


def test_encrypt_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    result = cli("encrypt", stdin="whatever\n", cwd=tmp_path)
    assert result.returncode == 2
    assert "enc: values need a key" in result.stderr
    assert result.stdout == ""


# --- redaction -------------------------------------------------------------------------------------------


def test_loaded_secret_is_masked_by_redact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = unique_secret()
    monkeypatch.setenv("SHOP1_ADMIN_PASSWORD", plain)
    load_config(write(tmp_path / "site.yml", http_config("{env: SHOP1_ADMIN_PASSWORD}")))
    assert redact(f"login as monitor with {plain} refused") == f"login as monitor with {MASK} refused"
    assert redact("nothing secret here") == "nothing secret here"


def test_key_that_decrypted_enc_values_is_masked_by_redact(tmp_path: Path, keys: Keys) -> None:
    load_config(write(tmp_path / "site.yml", http_config(keys.enc)), key_file=str(keys.key_file))
    key = keys.key_file.read_text().strip()
    assert redact(f"key={key}") == f"key={MASK}"


def test_log_record_through_redacting_filter_has_no_secret_in_message_arguments_or_traceback(
    tmp_path: Path,
) -> None:
    plain = unique_secret()
    write(tmp_path / "admin.txt", plain)
    config = load_config(write(tmp_path / "site.yml", http_config("{file: admin.txt}")))
    assert password_of(config).reveal() == plain

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test_secrets.redaction.{random_secrets.token_hex(4)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"server refused password {plain}")
        except RuntimeError:
            logger.error("event=login_failed password=%s note=%s", plain, "see " + plain, exc_info=True)
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert plain not in text
    assert f"event=login_failed password={MASK} note=see {MASK}" in text
    assert "Traceback" in text and f"RuntimeError: server refused password {MASK}" in text


def test_redact_masks_a_password_inside_a_url() -> None:
    assert redact("GET http://monitor:x9-not-registered@127.0.0.1/ failed") == \
        f"GET http://{MASK}@127.0.0.1/ failed"


def test_plain_text_secret_loads_but_warns_with_the_path_and_not_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = unique_secret()
    config_file = write(tmp_path / "site.yml", http_config(plain))
    with caplog.at_level(logging.WARNING, logger="exporter.config.loader"):
        config = load_config(config_file)
    assert password_of(config).reveal() == plain
    assert plain not in repr(password_of(config))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "plain_secret" in r.getMessage()]
    assert len(warnings) == 1
    assert f"path={PASSWORD_PATH}" in warnings[0].getMessage()
    assert f"file={config_file}" in warnings[0].getMessage()
    assert plain not in caplog.text


# --- the one-shot check command --------------------------------------------------------------------------


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("output_format", ["table", "json"])
def test_check_command_reports_a_refused_connection_without_the_password(
    tmp_path: Path, output_format: str
) -> None:
    plain = unique_secret()
    port = free_local_port()
    config_file = write(tmp_path / "site.yml", http_config(plain, url=f"http://127.0.0.1:{port}/admin"))
    result = cli("check", "--config", str(config_file), "--format", output_format, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "refused" in result.stdout
    assert f"127.0.0.1:{port}" in result.stdout
    assert "plain_secret" in result.stderr  # the warning went through the log handler...
    assert plain not in result.stdout
    assert plain not in result.stderr  # ...without the value
