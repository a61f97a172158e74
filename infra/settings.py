"""Every setting, declared once: its environment variable, default, type, bounds and meaning.

The README's configuration table is generated from this model (`scripts/settings_table.py`),
and a test fails when the two disagree. Secrets are `SecretStr`: their value is read with
`.get_secret_value()` where it is used, and never appears in a repr, a log line or an error.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


# A request rate: (requests allowed, per this many seconds); 0 requests turns the limit off.
Rate = tuple[int, int]

_MiB = 1024 * 1024
_DAY = 24 * 3600
_RATE_HELP = "requests/seconds, e.g. `100/10s`; `0` turns it off"


def _setting(default: Any, description: str, *, env: str | None = None, shown: str | None = None,
             **constraints: Any) -> Any:
    """One setting. `env` overrides the variable's name (`LINLI_` + the field's otherwise);
    `shown` is the default as the README states it, where the value is made at start."""
    extra: JsonDict | None = None if shown is None else {"shown_default": shown}
    return Field(default, description=description, validation_alias=env,
                 json_schema_extra=extra, **constraints)


def _secret_factory() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


class Settings(BaseSettings):
    """Everything the app needs to start: `Settings.from_env()` at start, or built directly (the
    defaults, nothing read from the environment) in tests and tools."""

    model_config = SettingsConfigDict(
        env_prefix="LINLI_", frozen=True, extra="forbid", validate_by_name=True,
        validate_by_alias=True, validate_default=True,
        # A bad secret must not be echoed back in the error that refuses it.
        hide_input_in_errors=True,
    )

    host: str = _setting("127.0.0.1", "address to listen on", env="HOST")
    port: int = _setting(8080, "port to listen on", env="PORT", ge=0, le=65535)
    data_dir: Path = _setting(Path("var"), "SQLite file, embedded Redis, recordings, uploads")
    redis_url: SecretStr | None = _setting(
        None, "`redis://`, `rediss://` or `unix://` URL, e.g. `redis://localhost:6379/0`",
        env="REDIS_URL", shown="embedded redis-server")
    sale_redis_url: SecretStr | None = _setting(
        None, "a Redis Cluster node (`redis://host:port`) whose cluster holds the flash sales' "
        "stock, so a sale split over buckets sells on many cores; everything else stays on "
        "`REDIS_URL`", shown="`REDIS_URL`")
    database_url: SecretStr | None = _setting(
        None, "`postgresql://user:pw@host/db` or `sqlite:///path`", env="DATABASE_URL",
        shown="SQLite file in `var/`")
    secret_key: SecretStr = Field(
        default_factory=_secret_factory, min_length=32,
        description="token and signature key (32+ characters)",
        json_schema_extra={"shown_default": "generated into `var/secret_key`"})
    admin_password: SecretStr | None = _setting(
        None, "creates or resets the user `admin` at start; a weak one (see Passwords below) "
        "stops the start with a configuration error")
    token_ttl_s: int = _setting(7 * _DAY, "how long a login token is valid (seconds)",
                                ge=60, le=90 * _DAY)
    demo: bool = _setting(True, "`0` starts without demo data and its synthetic stream")
    max_body_bytes: int = _setting(_MiB, "request body limit (413 above)", ge=1024, le=64 * _MiB)
    # Slowloris: a connection that trickles its headers holds a slot until this runs out.
    header_timeout_s: int = _setting(
        15, "a new connection must send a whole request head within this (seconds)", ge=1, le=300)
    max_upload_bytes: int = _setting(10 * _MiB, "upload limit (QC reports, claim photos)",
                                     ge=1024, le=512 * _MiB)
    hold_ttl_s: int = _setting(15 * 60, "how long a flash-sale hold waits for payment (seconds)",
                               ge=1, le=_DAY)
    workers: int = _setting(1, "worker processes sharing the port", ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _setting(
        "INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR` (JSON lines on stderr)")
    allowed_origins: tuple[str, ...] = _setting(
        (), "other origins (comma-separated) allowed to open Socket.IO and to publish over WHIP "
        "(same origin always is; WHEP answers any origin)")
    stun_urls: tuple[str, ...] = _setting(
        (), "STUN servers (comma-separated `stun:host:port`) offered to WebRTC peers; none: "
        "host candidates only")
    webrtc_viewer_cap: int = _setting(
        40, "WHEP (low-delay) seats per process; beyond it viewers get HLS", ge=0, le=10_000)
    whep_connect_deadline_s: int = _setting(
        5, "a WHEP seat whose peer has not connected (ICE + DTLS) this long after its answer "
        "is freed (seconds)", ge=1, le=120)
    whep_seats_per_address: int = _setting(
        4, "WHEP seats one address may hold per session (429 `rate_limited`, reason "
        "`too_many_seats`; exempt addresses are not counted)", ge=1, le=10_000)
    publisher_grace_s: int = _setting(
        20, "a dropped publisher may come back this long (same session, same recording)",
        ge=0, le=3600)
    public_url: str | None = _setting(
        None, "the public address pages are served from (allowed origin, links)")
    rtmp_port: int = _setting(1935, "RTMP ingest port; `0` picks a free one, `-1` turns it off",
                              ge=-1, le=65535)
    # --- abuse limits (SECURITY.md explains them) ---
    # A proxy's X-Forwarded-For is believed; exempt addresses are the box itself (health checks,
    # benchmarks, a proxy that sends no X-Forwarded-For).
    trusted_proxies: tuple[str, ...] = _setting(
        ("127.0.0.1", "::1"), "proxies (comma-separated addresses or networks) whose "
        "`X-Forwarded-For` is believed; empty: none")
    rate_limit_exempt: tuple[str, ...] = _setting(
        ("127.0.0.0/8", "::1"), "addresses or networks never limited per address")
    rate_limits: bool = _setting(
        True, "`0` turns every request rate limit off (benchmarks); login lockout stays")
    # Counts far below their limit reach Redis this often (near it: every 100 ms); see
    # docs/FLASH_SALE.md for how far over its limit a subject can get across processes.
    rate_limit_slow_sync_s: float = _setting(
        2.0, "seconds between shares of rate-limit counts far below their limit", ge=0.1, le=5.0)
    # Per address limits are generous: a whole 小区 may share one NAT address.
    rate_login_per_ip: Rate = _setting((300, 60), f"logins per address ({_RATE_HELP})")
    rate_holds_per_user: Rate = _setting((100, 10), f"flash-sale holds per user ({_RATE_HELP})")
    rate_holds_per_ip: Rate = _setting((3000, 10), f"flash-sale holds per address ({_RATE_HELP})")
    rate_comments_per_ip: Rate = _setting((300, 10), f"comments per address ({_RATE_HELP})")
    rate_socket_connects_per_ip: Rate = _setting(
        (1200, 60), f"Socket.IO connections per address ({_RATE_HELP})")
    # Each sign-up costs an argon2 hash and makes an account.
    rate_signup_per_ip: Rate = _setting((60, 600), f"sign-ups per address ({_RATE_HELP})")
    login_free_failures: int = _setting(
        5, "wrong passwords per account per hour before each try waits 2 s, 4 s, …", ge=1, le=1000)
    login_free_failures_per_ip: int = _setting(
        100, "wrong passwords per address per hour before each try waits", ge=1, le=100_000)
    # The client reconnects and resumes from its last seq, so cutting it costs it little.
    socket_max_queued_frames: int = _setting(
        1000, "a Socket.IO client this many frames behind is disconnected", ge=10, le=1_000_000)
    socket_max_queued_bytes: int = _setting(
        _MiB, "a Socket.IO client this many bytes behind is disconnected",
        ge=16 * 1024, le=1024 * _MiB)
    # A reader that stops reading must not hold server resources for long.
    media_send_timeout_s: int = _setting(
        30, "a media file (HLS segment, playlist, poster) must reach the reader within this "
        "(seconds)", ge=1, le=3600)
    # --- Low-latency HLS (docs/LLHLS.md)
    hls_part_target_s: float = _setting(
        0.5, "LL-HLS part length (seconds); players start about 3 parts behind live; `0` serves "
        "plain HLS only (else 0.1..2)", ge=0.0, le=2.0)
    hls_max_waiters: int = _setting(
        2000, "blocking LL-HLS requests (playlist reloads, hinted parts) held per stream at once; "
        "beyond it 503 `hls_busy` with Retry-After", ge=1, le=1_000_000)
    hls_low_rendition: Literal["auto", "on", "off"] = _setting(
        "auto", "a second 360p HLS rendition (~550 kbit/s) and a master playlist for weak "
        "networks; `auto`: on only with 4 or more CPU cores (it costs a share of a core per "
        "stream)")
    # --- WeChat (docs/JOINING.md, docs/NOTIFICATIONS.md): off unless the app id and secret are set
    wechat_app_id: str | None = _setting(
        None, "WeChat official account app id: sign-in with WeChat (OAuth 网页授权) and "
        "subscription messages")
    wechat_app_secret: SecretStr | None = _setting(None, "that account's app secret")
    wechat_template_id: str | None = _setting(
        None, "subscription-message template for 开播提醒 (going-live reminders); none: in-app only")
    wechat_notice_template_id: str | None = _setting(
        None, "subscription-message template for a community's notice to its members (thing1 "
        "the community, thing2 the notice, time3 when); none: in-app only")
    wechat_authorize_url: str = _setting(
        "https://open.weixin.qq.com/connect/oauth2/authorize", "WeChat's OAuth consent page",
        pattern=r"^https?://")
    wechat_api_base: str = _setting("https://api.weixin.qq.com", "WeChat's API (OAuth tokens, "
                                    "user info, subscription messages)", pattern=r"^https?://")
    # --- WeChat Pay API v3 (docs/WECHATPAY.md): off unless mchid, key and merchant key are set
    wechatpay_mchid: str | None = _setting(None, "WeChat Pay merchant id (商户号); with the "
                                           "three below it turns WeChat Pay on")
    wechatpay_appid: str | None = _setting(
        None, "the app id payments are made under (the official account's); default: "
        "`LINLI_WECHAT_APP_ID`")
    wechatpay_apiv3_key: SecretStr | None = _setting(
        None, "APIv3 key (32 characters): decrypts notifications, certificates and bills",
        min_length=32, max_length=32)
    wechatpay_merchant_serial: str | None = _setting(
        None, "serial number of the merchant API certificate", pattern=r"^[0-9A-Fa-f]{1,64}$")
    wechatpay_private_key_file: Path | None = _setting(
        None, "file holding the merchant API private key (PEM); read at start, never logged")
    wechatpay_platform_cert_dir: Path | None = _setting(
        None, "folder of WeChat Pay platform certificates (PEM); empty or unset: downloaded "
        "from the API at start", shown="downloaded")
    wechatpay_api_base: str = _setting("https://api.mch.weixin.qq.com", "WeChat Pay's API",
                                       pattern=r"^https?://")
    wechatpay_notify_base: str | None = _setting(
        None, "public https origin WeChat Pay calls back (notifications); default: "
        "`LINLI_PUBLIC_URL`", pattern=r"^https?://")
    # --- Alipay (docs/PAYMENTS.md): off unless the app id and both key files are set ---
    alipay_app_id: str | None = _setting(
        None, "Alipay open-platform app id: buyers pay with Alipay (phone web and QR)",
        pattern=r"^[0-9A-Za-z]{1,32}$")
    alipay_private_key_file: Path | None = _setting(
        None, "file holding the app's RSA2 private key (PEM); its content is never logged")
    alipay_public_key_file: Path | None = _setting(
        None, "file holding Alipay's RSA2 public key (PEM), which verifies its answers and "
        "notifications")
    alipay_gateway_url: str = _setting("https://openapi.alipay.com/gateway.do",
                                       "Alipay's open API gateway", pattern=r"^https?://")
    alipay_notify_url: str | None = _setting(
        None, "where Alipay posts payment notifications",
        shown="`LINLI_PUBLIC_URL` + `/api/payments/alipay/notify`", pattern=r"^https?://")
    # --- several processes and nodes (docs/CLUSTER.md) ---
    internal_host: str = _setting(
        "127.0.0.1", "each process also listens here (a free port) for requests the other "
        "processes forward to it; `0.0.0.0` when several nodes share Redis")
    internal_port: int = _setting(
        0, "that listener's port (`0`: any free one; it is advertised through Redis)",
        ge=0, le=65535)
    advertise_host: str | None = _setting(
        None, "how the other processes and nodes reach that listener",
        shown="`LINLI_INTERNAL_HOST` (with `0.0.0.0`: this host's address)")
    node_id: str | None = _setting(
        None, "workers sharing a data dir are one node (they share its recordings)",
        shown="kept in `var/node_id`", pattern=r"^[A-Za-z0-9-]{1,40}$")
    # Set by the server at start-up (this process's internal listener as the others reach it),
    # never read from the environment.
    internal_url: str | None = Field(None, exclude=True)

    @field_validator("hls_part_target_s")
    @classmethod
    def _part_target(cls, value: float) -> float:
        # Shorter parts than 0.1 s would be mostly headers (and ~100 per segment is the limit).
        if 0 < value < 0.1:
            raise ValueError("must be 0 (plain HLS) or 0.1..2")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("allowed_origins", "stun_urls", "trusted_proxies", "rate_limit_exempt",
                     mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies", "rate_limit_exempt")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("rate_login_per_ip", "rate_holds_per_user", "rate_holds_per_ip",
                     "rate_comments_per_ip", "rate_socket_connects_per_ip", "rate_signup_per_ip",
                     mode="before")
    @classmethod
    def _rate(cls, value: object, info: ValidationInfo) -> object:
        """`100/10s` (or `100/10`), or `0`/`off` for no limit (keeping the default window)."""
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in {"0", "off"}:
            default = cls.model_fields[info.field_name or ""].default
            return (0, default[1])
        count, slash, window = text.partition("/")
        window = window.removesuffix("s")
        if not slash or not count.isdigit() or not window.isdigit():
            raise ValueError("must look like 100/10s (requests/seconds) or 0")
        return (int(count), int(window))

    @field_validator("rate_login_per_ip", "rate_holds_per_user", "rate_holds_per_ip",
                     "rate_comments_per_ip", "rate_socket_connects_per_ip", "rate_signup_per_ip")
    @classmethod
    def _rate_bounds(cls, value: Rate) -> Rate:
        count, window = value
        if not 1 <= window <= _DAY or not 0 <= count <= 10_000_000:
            raise ValueError("window 1..86400 s and 0..10,000,000 requests")
        return value

    @field_validator("redis_url", "sale_redis_url", mode="before")
    @classmethod
    def _redis_scheme(cls, value: object) -> object:
        raw = _plain(value)
        if raw is not None and not raw.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_scheme(cls, value: object) -> object:
        raw = _plain(value)
        if raw is not None and not raw.startswith(
            ("postgres://", "postgresql://", "postgresql+asyncpg://", "sqlite")
        ):
            raise ValueError("must be a postgresql:// or sqlite:/// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the caller passes: a test's settings never pick up the developer's shell.
        # The environment comes in through from_env, the one place that reads it.
        return (init_settings,)

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: the configured one, or the embedded SQLite file."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'linli.db').resolve()}"
        url = self.database_url.get_secret_value()
        # Accept the URLs people paste from their hosting panels.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix):]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
        return url

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @model_validator(mode="after")
    def _wechatpay_whole(self) -> Settings:
        # Half a WeChat Pay configuration must not quietly fall back to the simulated provider,
        # which marks every hold paid without money moving.
        parts = {"LINLI_WECHATPAY_MCHID": self.wechatpay_mchid,
                 "LINLI_WECHATPAY_APIV3_KEY": self.wechatpay_apiv3_key,
                 "LINLI_WECHATPAY_MERCHANT_SERIAL": self.wechatpay_merchant_serial,
                 "LINLI_WECHATPAY_PRIVATE_KEY_FILE": self.wechatpay_private_key_file}
        missing = [name for name, value in parts.items() if not value]
        if len(missing) < len(parts):
            if not (self.wechatpay_appid or self.wechat_app_id):
                missing.append("LINLI_WECHATPAY_APPID")
            if missing:
                raise ValueError("WeChat Pay is half configured; also set " + ", ".join(missing))
        return self

    @property
    def wechatpay_enabled(self) -> bool:
        """WeChat Pay is used only when everything it signs and decrypts with is configured."""
        return bool(self.wechatpay_mchid and self.wechatpay_apiv3_key
                    and self.wechatpay_merchant_serial and self.wechatpay_private_key_file
                    and (self.wechatpay_appid or self.wechat_app_id))

    def with_(self, **changes: object) -> Settings:
        """A copy with some values changed, validated like the rest."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        return type(self).model_validate(values)

    def for_log(self) -> dict[str, object]:
        """The values as a start-up log shows them: every secret masked."""
        return self.model_dump(mode="json", exclude={"internal_url"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from environment variables (`env_name` of each field); an empty value
        is unset, except for a list, where it is the empty list."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, info in cls.model_fields.items():
            variable = env_name(name, info)
            if variable is None or variable not in env:
                continue
            raw = env[variable]
            if raw.strip() == "" and _annotation_text(info) != "tuple[str, ...]":
                continue
            values[name] = raw
        if "secret_key" not in values:
            values["secret_key"] = _persistent_secret(Path(str(values.get("data_dir", "var"))))
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None


def env_name(name: str, info: FieldInfo) -> str | None:
    """The environment variable a field is read from (None: set by the server, not read)."""
    if info.exclude:
        return None
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{Settings.model_config.get('env_prefix', '')}{name.upper()}"


def describe(exc: ValidationError) -> str:
    """Pydantic's errors, each led by the variable it is about (values are not repeated)."""
    fields = Settings.model_fields
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        info = fields.get(field)
        variable = env_name(field, info) if info is not None else field
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{variable or field}: {message}")
    return "; ".join(parts)


def _plain(value: object) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def _annotation_text(info: FieldInfo) -> str:
    annotation = info.annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pydantic.types.", "")


def _persistent_secret(data_dir: Path) -> SecretStr:
    """A signing key kept in the data dir, so tokens survive restarts of the embedded setup."""
    path = data_dir / "secret_key"
    if path.exists():
        return SecretStr(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written with owner-only permissions: whoever reads it can mint tokens.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return SecretStr(key)


def settings_table() -> str:
    """The README's configuration table, made from the model."""
    rows = ["| variable | default | values | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        variable = env_name(name, info)
        if variable is None:
            continue
        rows.append(f"| `{variable}` | {_shown_default(info)} | {_values(name, info)} "
                    f"| {info.description} |")
    return "\n".join(rows) + "\n"


def _values(name: str, info: FieldInfo) -> str:
    """What the variable accepts, from the field's type and bounds."""
    annotation = _annotation_text(info)
    if annotation == "int":
        bounds = {type(item).__name__: getattr(item, type(item).__name__.lower(), None)
                  for item in info.metadata}
        return f"{bounds.get('Ge')} … {bounds.get('Le')}"
    if annotation == "bool":
        return "`1`/`0`, `true`/`false`, `on`/`off`"
    if annotation == "tuple[str, ...]":
        return "comma-separated list"
    if annotation == "tuple[int, int]":
        return "`N/Ss` or `0`"
    if annotation.startswith("Literal"):
        return "one of the names"
    if "SecretStr" in annotation:
        return "secret text"
    if name.endswith("_url"):
        return "URL"
    return "path" if "Path" in annotation else "text"


def _shown_default(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
        return str(extra["shown_default"])
    default = info.get_default(call_default_factory=False)
    if default is None or default == ():
        return "unset"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    if isinstance(default, tuple) and all(isinstance(part, str) for part in default):
        return "`" + ",".join(default) + "`"
    if isinstance(default, tuple):
        return f"`{default[0]}/{default[1]}s`"
    return f"`{default}`"
