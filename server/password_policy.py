"""What a password must be: long enough, not blank, not the username, and not easy to guess.

"Easy to guess" is zxcvbn's estimate (Dropbox's, maintained as the `zxcvbn` package): it knows
the common-password lists, names and words, keyboard walks, repeats, sequences and dates, and
is told the username so that `alice2024` does not pass for alice. Applied wherever a password
is set: user creation, an admin resetting one, the CLI, and `LINLI_ADMIN_PASSWORD` at start.
"""

from __future__ import annotations

from functools import lru_cache

from zxcvbn import zxcvbn

from commerce.errors import DomainError
from infra.settings import SettingsError

MIN_LENGTH = 10
# zxcvbn scores 0–4; 2 means about 10^8 guesses or more ("somewhat guessable"): with the login
# lockout and argon2 in front, far beyond online guessing, while a neighbour can still choose a
# phrase they remember. 0 and 1 are the top lists, repeats, keyboard walks, name+year.
MIN_SCORE = 2
# zxcvbn refuses longer input (its matching is quadratic); what lies beyond only adds strength.
_SCORED_CHARS = 72

REASONS = {
    "blank": "密码不能全是空白 / The password cannot be only spaces",
    "too_short": f"密码至少 {MIN_LENGTH} 个字符 / At least {MIN_LENGTH} characters",
    "same_as_username": "密码不能与用户名相同 / The password cannot be the username",
    "too_guessable": "密码太常见或太容易猜 / The password is too common or easy to guess",
}


class WeakPassword(DomainError):
    code = "weak_password"
    status = 400
    default_message = REASONS["too_guessable"]


def weakness(password: str, username: str = "") -> str | None:
    """Why this password is refused (a key of REASONS), or None when it is acceptable."""
    if not password.strip():
        return "blank"
    if len(password) < MIN_LENGTH:
        return "too_short"
    if username and password.strip().casefold() == username.strip().casefold():
        return "same_as_username"
    inputs = [username] if username else []
    if int(zxcvbn(password[:_SCORED_CHARS], user_inputs=inputs)["score"]) < MIN_SCORE:
        return "too_guessable"
    return None


def check_password(password: str, username: str = "") -> None:
    """Raise WeakPassword (400 `weak_password`, with `reason` and `min_length`) unless acceptable.

    Costs up to ~60 ms of CPU for a long password: call it off the event loop
    (`asyncio.to_thread`) in request handlers.
    """
    reason = weakness(password, username)
    if reason is not None:
        raise WeakPassword(REASONS[reason], reason=reason, min_length=MIN_LENGTH, field="password")


def check_admin_password(password: str) -> None:
    """`LINLI_ADMIN_PASSWORD` meets the password policy, or the service refuses to start."""
    reason = _admin_weakness(password)
    if reason is not None:
        raise SettingsError(f"LINLI_ADMIN_PASSWORD is too weak ({reason}): {REASONS[reason]}")


# Every app a process builds (each worker, each test) checks the same configured password:
# scoring it is ~10 ms of CPU, so the verdict is kept.
@lru_cache(maxsize=4)
def _admin_weakness(password: str) -> str | None:
    return weakness(password, "admin")
