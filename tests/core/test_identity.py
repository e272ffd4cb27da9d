"""The sandbox's host identity: never root."""

from __future__ import annotations

import os

import pytest

from nanoclaw_runtimes_core.errors import ConfigError
from nanoclaw_runtimes_core.identity import DEFAULT_SANDBOX_ID, sandbox_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root picks a sandbox user")


def test_root_runs_sandboxes_as_an_unprivileged_user() -> None:
    user = sandbox_user("")
    assert (user.uid, user.gid) == (DEFAULT_SANDBOX_ID, DEFAULT_SANDBOX_ID)
    assert not user.is_invoking_user
    assert (sandbox_user("1234").uid, sandbox_user("1234").gid) == (1234, 1234)
    assert (sandbox_user("1234:99").uid, sandbox_user("1234:99").gid) == (1234, 99)
    nobody = sandbox_user("nobody")
    assert nobody.uid == 65534 and nobody.source == "NANOCLAW_SANDBOX_USER"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "is root"),
        ("root", "is root"),
        ("5:0", "is root"),
        ("no-such-user-x", "no user named 'no-such-user-x'"),
        ("12:ab", "expected uid\\[:gid\\] or a user name"),
        ("4294967000", "leaves no room for a VM's 65536 ids"),
    ],
)
def test_bad_sandbox_users_are_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sandbox_user(value)
