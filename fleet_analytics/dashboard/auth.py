"""Analyst accounts and dashboard sessions: password hashing, login with lockout, session checks,
CSRF tokens.

- Passwords are hashed with werkzeug's scrypt (salted); only the hash is stored.
- A login puts the analyst's id and the account's ``session_epoch`` into Flask's signed session
  cookie (HttpOnly, SameSite=Lax, Secure per FLEET_COOKIE_SECURE, lifetime FLEET_SESSION_HOURS). Every
  request checks the account still exists, is enabled and has the same epoch: changing a password or
  disabling an account ends its sessions.
- :data:`MAX_FAILURES` wrong passwords in a row lock the account for :data:`LOCK_SECONDS`; the answer
  to a wrong name, a wrong password and a locked account is the same.
- Every state-changing request (POST) carries the session's CSRF token in a form field or the
  ``X-CSRF-Token`` header, compared in constant time.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from werkzeug.security import check_password_hash, generate_password_hash

from fleet_analytics.config import Settings, key_file
from fleet_analytics.db import Database, load_sql

ROLES: Final = ("admin", "analyst")
USERNAME: Final = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024
MAX_FAILURES: Final = 5
LOCK_SECONDS: Final = 300
SESSION_KEY_FILE: Final = "session.key"
# a hash to check wrong user names against, so they take as long as wrong passwords
_DUMMY_HASH: Final = generate_password_hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A bad user name, password or role; the message says what is accepted."""


@dataclass(frozen=True)
class Analyst:
    id: int
    username: str
    role: str
    session_epoch: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_username(username: str) -> str:
    if not USERNAME.match(username or ""):
        raise AccountError(f"user name {username!r}: use 1-64 letters, digits and . _ @ - (no spaces)")
    return username


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
    return role


def create_analyst(db: Database, username: str, password: str, role: str) -> int:
    """A new account; AccountError when the name is taken or a value is bad."""
    values = {
        "username": check_username(username),
        "password_hash": generate_password_hash(check_password(password)),
        "role": check_role(role),
    }
    with db.transaction() as cur:
        cur.execute("SELECT 1 FROM analysts WHERE username = %(username)s", values)
        if cur.fetchone() is not None:
            raise AccountError(f"user {username!r} exists: use --reset to set a new password")
        cur.execute(load_sql("analyst_insert"), values)
        return int(cur.fetchone()[0])


def reset_analyst(db: Database, username: str, password: str, role: str | None = None) -> int:
    """A new password (and role) for an account; its sessions end and any lockout is lifted."""
    values = {
        "username": check_username(username),
        "password_hash": generate_password_hash(check_password(password)),
        "role": check_role(role) if role is not None else None,
    }
    with db.transaction() as cur:
        cur.execute(load_sql("analyst_set_password"), values)
        row = cur.fetchone()
    if row is None:
        raise AccountError(f"there is no user {username!r}: create it first")
    return int(row[0])


def disable_analyst(db: Database, username: str) -> bool:
    with db.transaction() as cur:
        cur.execute(load_sql("analyst_disable"), {"username": check_username(username)})
        return cur.fetchone() is not None


def list_analysts(db: Database) -> list[dict[str, Any]]:
    with db.transaction() as cur:
        cur.execute(load_sql("analysts_list"))
        names = [column.name for column in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def authenticate(db: Database, username: str, password: str) -> Analyst | None:
    """The account when the password is right and the account enabled and not locked; else None (the
    caller says the same for every failure). Wrong passwords are counted towards the lockout."""
    if not USERNAME.match(username or "") or not isinstance(password, str) or len(password) > MAX_PASSWORD:
        check_password_hash(_DUMMY_HASH, "x")
        return None
    with db.transaction() as cur:
        cur.execute(load_sql("analyst_by_name"), {"username": username})
        row = cur.fetchone()
        if row is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        analyst_id, name, password_hash, role, epoch, _failures, locked, disabled = row
        good = check_password_hash(password_hash, password)
        if locked or disabled:
            return None
        if not good:
            cur.execute(
                load_sql("analyst_login_failed"),
                {"analyst_id": analyst_id, "max_failures": MAX_FAILURES, "lock_seconds": LOCK_SECONDS},
            )
            return None
        cur.execute(load_sql("analyst_login_ok"), {"analyst_id": analyst_id})
    return Analyst(int(analyst_id), str(name), str(role), int(epoch))


def session_analyst(db: Database, analyst_id: Any, epoch: Any) -> Analyst | None:
    """The account of a session, if it is still valid (exists, enabled, same epoch)."""
    if not isinstance(analyst_id, int) or not isinstance(epoch, int):
        return None
    with db.transaction() as cur:
        cur.execute(load_sql("analyst_by_id"), {"analyst_id": analyst_id})
        row = cur.fetchone()
    if row is None:
        return None
    found_id, name, role, found_epoch, disabled = row
    if disabled or int(found_epoch) != epoch:
        return None
    return Analyst(int(found_id), str(name), str(role), int(found_epoch))


def csrf_matches(expected: Any, given: Any) -> bool:
    return (
        isinstance(expected, str)
        and isinstance(given, str)
        and bool(expected)
        and hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
    )


def session_key(settings: Settings) -> str:
    """FLEET_SECRET_KEY, else a random key kept in the data directory (0600), so that every web
    process and every restart signs sessions alike."""
    if settings.secret_key:
        return settings.secret_key
    return key_file(Path(settings.data_dir) / SESSION_KEY_FILE, when_short="open sessions then end")


def cookie_secure(settings: Settings) -> bool:
    if settings.cookie_secure == "always":
        return True
    if settings.cookie_secure == "never":
        return False
    return bool(settings.tls_cert)
