"""Settings: one declaration per variable, the README generated from it, secrets kept out of
every text the service prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError, env_name, settings_table
from tests.alipay_server import keypair
from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SECRET = "k" * 24 + "-signing-secret-value"
ADMIN = "Loquat-Season-Admin-7"
DB_PASSWORD = "pg-password-in-the-url"


def test_readme_table_is_the_one_the_model_makes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    between = re.search(r"<!-- settings-table:[^>]*-->\n(.*?)<!-- /settings-table -->", readme,
                        flags=re.DOTALL)
    assert between is not None, "README.md lost its settings-table markers"
    assert between.group(1) == settings_table(), "run: python scripts/settings_table.py"


def test_every_variable_is_documented_once() -> None:
    table = settings_table()
    documented = re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.MULTILINE)
    assert len(documented) == len(set(documented))
    declared = {env_name(name, info) for name, info in Settings.model_fields.items()} - {None}
    assert set(documented) == declared
    # Those the README used to leave out.
    for variable in ("LINLI_TOKEN_TTL_S", "LINLI_STUN_URLS", "LINLI_WEBRTC_VIEWER_CAP",
                     "LINLI_PUBLISHER_GRACE_S", "LINLI_RTMP_PORT", "LINLI_LOG_LEVEL"):
        assert variable in documented
    for name, info in Settings.model_fields.items():
        if env_name(name, info) is not None:
            assert info.description and "\n" not in info.description, name


def test_the_environment_is_read_into_typed_values() -> None:
    settings = Settings.from_env({
        "LINLI_SECRET_KEY": SECRET, "LINLI_TOKEN_TTL_S": "3600", "LINLI_STUN_URLS":
        "stun:a.example:3478, stun:b.example:3478", "LINLI_LOG_LEVEL": "debug",
        "LINLI_DEMO": "off", "LINLI_RATE_LOGIN_PER_IP": "off", "LINLI_TRUSTED_PROXIES": "",
        "LINLI_PUBLIC_URL": "", "LINLI_RTMP_PORT": "-1", "DATABASE_URL":
        f"postgresql://linli:{DB_PASSWORD}@db/linli"})
    assert settings.token_ttl_s == 3600 and settings.log_level == "DEBUG"
    assert settings.stun_urls == ("stun:a.example:3478", "stun:b.example:3478")
    assert settings.demo is False and settings.rtmp_port == -1
    assert settings.rate_login_per_ip == (0, 60)  # off keeps the default window
    assert settings.trusted_proxies == () and settings.public_url is None
    assert settings.sqlalchemy_url == f"postgresql+asyncpg://linli:{DB_PASSWORD}@db/linli"
    # Built in code nothing comes from the environment: only the defaults and what is passed.
    assert Settings(port=9000).token_ttl_s == 7 * 24 * 3600


@pytest.mark.parametrize(("variable", "value"), [
    ("LINLI_TOKEN_TTL_S", "59"), ("LINLI_WEBRTC_VIEWER_CAP", "-1"), ("LINLI_RTMP_PORT", "70000"),
    ("LINLI_PUBLISHER_GRACE_S", "soon"), ("LINLI_LOG_LEVEL", "loud"), ("LINLI_WORKERS", "0"),
    ("LINLI_NODE_ID", "node one"), ("LINLI_RATE_HOLDS_PER_USER", "5/0s"), ("REDIS_URL", "http://x"),
])
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        Settings.from_env({"LINLI_SECRET_KEY": SECRET, variable: value})


def test_secrets_never_show_in_repr_logs_or_errors() -> None:
    settings = Settings.from_env({"LINLI_SECRET_KEY": SECRET, "LINLI_ADMIN_PASSWORD": ADMIN,
                                  "DATABASE_URL": f"postgresql://linli:{DB_PASSWORD}@db/linli",
                                  "REDIS_URL": f"redis://default:{DB_PASSWORD}@cache:6379/0"})
    shown = " ".join([repr(settings), str(settings), str(settings.for_log()),
                      repr(settings.with_(port=1))])
    for secret in (SECRET, ADMIN, DB_PASSWORD):
        assert secret not in shown
    assert settings.secret_key.get_secret_value() == SECRET
    # A refused secret or URL is not repeated in the message that refuses it.
    for variable, bad in (("LINLI_SECRET_KEY", DB_PASSWORD),
                          ("DATABASE_URL", f"mysql://linli:{DB_PASSWORD}@db/linli")):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({"LINLI_SECRET_KEY": SECRET, variable: bad})
        assert variable in str(refused.value) and DB_PASSWORD not in str(refused.value)
    with pytest.raises(ValueError) as direct:
        Settings(secret_key=DB_PASSWORD)
    assert DB_PASSWORD not in str(direct.value)


def test_start_up_log_has_the_settings_but_no_secret(tmp_path: Path, redis_url: str) -> None:
    # A Redis URL with a password: the test Redis lets the default user in with any.
    host_part = redis_url.removeprefix("redis://")
    # Alipay configured: its app private key is a secret file, named in settings, never shown.
    _, app_private, _ = keypair()
    _, _, alipay_public = keypair()
    (tmp_path / "app_private.pem").write_text(app_private)
    (tmp_path / "alipay_public.pem").write_text(alipay_public)
    server = ServerProcess(tmp_path / "app", f"redis://default:{DB_PASSWORD}@{host_part}",
                           f"sqlite:///{tmp_path / 'linli.db'}", admin_password=ADMIN,
                           extra_env={"LINLI_LOG_LEVEL": "INFO", "LINLI_RTMP_PORT": "-1",
                                      "LINLI_ALIPAY_APP_ID": "2021000000000001",
                                      "LINLI_ALIPAY_PRIVATE_KEY_FILE":
                                          str(tmp_path / "app_private.pem"),
                                      "LINLI_ALIPAY_PUBLIC_KEY_FILE":
                                          str(tmp_path / "alipay_public.pem"),
                                      "LINLI_ALIPAY_GATEWAY_URL": "http://127.0.0.1:9/gateway.do"})
    server.start()
    server.stop()
    log = (tmp_path / "app" / "server.log").read_text(errors="replace")
    assert '"msg": "starting"' in log and '"token_ttl_s": 604800' in log, log[-2000:]
    assert '"msg": "payments through alipay"' in log, log[-2000:]
    key_body = "".join(app_private.splitlines()[1:-1])
    for secret in (server.secret, ADMIN, DB_PASSWORD, key_body[:40], key_body[-40:]):
        assert secret not in log
        assert secret[:16] not in log
