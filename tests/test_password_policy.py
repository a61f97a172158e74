"""The password policy, everywhere a password is set: POST /api/users, PATCH /api/users/{id},
the create-user command and LINLI_ADMIN_PASSWORD at start (which refuses to start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError
from server.demo import DEMO_PASSWORD, DEMO_USERS
from server.password_policy import MIN_LENGTH, check_admin_password, weakness
from tests.conftest import ADMIN_PASSWORD, Api

ROOT = Path(__file__).resolve().parent.parent
USERNAME = "neighbour_wang"
# (password, reason): what outside testers got accepted, and their near relatives.
WEAK = (
    ("12345678", "too_short"),
    ("password", "too_short"),
    (" " * 8, "blank"),
    (" " * 12, "blank"),
    ("\t\n" * 6, "blank"),
    (USERNAME, "same_as_username"),
    (USERNAME.upper() + " ", "same_as_username"),
    ("1234567890", "too_guessable"),
    ("qwertyuiop", "too_guessable"),
    ("passwordpassword", "too_guessable"),
    ("password123", "too_guessable"),
    ("aaaaaaaaaaaa", "too_guessable"),
    (USERNAME + "1", "too_guessable"),
    ("a" * 200, "too_guessable"),  # past what zxcvbn scores: the first part still counts
)


@pytest.mark.parametrize(("password", "reason"), WEAK)
def test_weak_passwords_are_refused_with_a_reason(password: str, reason: str) -> None:
    assert weakness(password, USERNAME) == reason


def test_the_passwords_the_project_itself_uses_pass() -> None:
    for name, _role, _display in DEMO_USERS:
        assert weakness(DEMO_PASSWORD, name) is None, name
    assert weakness(ADMIN_PASSWORD, "admin") is None
    assert weakness("password-" + USERNAME, USERNAME) is None  # tests/conftest.py's helper
    assert weakness("邻里团购-枇杷熟了吗", "li_ayi") is None
    assert MIN_LENGTH >= 10


async def _create(api: Api, username: str, password: str) -> tuple[int, dict[str, object]]:
    resp = await api.client.post("/api/users", json={"username": username, "password": password},
                                 headers=api.auth(api.admin_token))
    return resp.status, await resp.json()


async def test_creating_a_user_applies_the_policy(api: Api) -> None:
    for password, reason in WEAK:
        status, body = await _create(api, USERNAME, password)
        error = body["error"]
        assert isinstance(error, dict)
        assert (status, error["code"], error["reason"]) == (400, "weak_password", reason), password
    status, _ = await _create(api, USERNAME, "枇杷熟了-tangqi-orchard")
    assert status == 201
    await api.login(USERNAME, "枇杷熟了-tangqi-orchard")


async def test_an_admin_reset_applies_the_policy_and_ends_old_sessions(api: Api) -> None:
    user_id, token = await api.user("viewer", "reset_me_li")
    for weak in ("12345678", "reset_me_li", " " * 10, "1234567890"):
        resp = await api.client.patch(f"/api/users/{user_id}", json={"password": weak},
                                      headers=api.auth(api.admin_token))
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "weak_password"
    resp = await api.client.patch(f"/api/users/{user_id}", json={"password": "new-loquat-season-7"},
                                  headers=api.auth(api.admin_token))
    assert resp.status == 200, await resp.text()
    assert (await api.client.get("/api/me", headers=api.auth(token))).status == 401
    await api.login("reset_me_li", "new-loquat-season-7")


def test_a_weak_admin_password_is_a_configuration_error() -> None:
    for weak in ("12345678", "admin", "password12", " " * 12):
        with pytest.raises(SettingsError, match="LINLI_ADMIN_PASSWORD is too weak"):
            check_admin_password(weak)
    check_admin_password(ADMIN_PASSWORD)
    admin = Settings.from_env({"LINLI_ADMIN_PASSWORD": ADMIN_PASSWORD,
                               "LINLI_SECRET_KEY": "s" * 40}).admin_password
    assert admin is not None and admin.get_secret_value() == ADMIN_PASSWORD


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "LINLI_SECRET_KEY": "s" * 40, **env}, check=False)


def test_serve_refuses_to_start_with_a_weak_admin_password(tmp_path: Path) -> None:
    done = _cli("serve", env={"LINLI_ADMIN_PASSWORD": "password", "LINLI_DATA_DIR": str(tmp_path),
                              "LINLI_DEMO": "0"})
    assert done.returncode == 2
    assert "LINLI_ADMIN_PASSWORD is too weak (too_short)" in done.stderr
    assert not (tmp_path / "linli.db").exists()  # refused before anything started


def test_create_user_command_applies_the_policy(tmp_path: Path) -> None:
    done = _cli("create-user", "cli_neighbour", "--password", "12345678",
                env={"LINLI_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2 and "weak_password (too_short)" in done.stderr
