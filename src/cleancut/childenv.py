"""The environment a child process gets: ours, minus every secret.

Hooks, the alert command and a restore test's smoke command are operator
commands that act on an agent or on restored data; none of them needs the
repository passphrase or the storage credentials, and a hook that logs its
environment, or a crash report of one, must not leak them. The rule is by name,
so that it covers variables we do not know about too. A variable is withheld if
its upper-cased name

- contains PASSW (PASSWORD, PASSWD), PASSPHRASE, SECRET, TOKEN, CREDENTIAL or
  PRIVATE anywhere (CLEANCUT_PASSWORD, CLEANCUT_TO_PASSWORD_FILE,
  AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, OPENCLAW_GATEWAY_TOKEN ...), or
- has KEY, APIKEY or PASS as one of its "_"-separated words (AWS_ACCESS_KEY_ID,
  OPENAI_API_KEY, GPG_KEY, SSHPASS no, but SSH_PASS yes).

A rule by name cannot know every secret (PGPASSWORD is caught, MYSQL_PWD is
not: PWD also names the working directory); an operator who keeps a secret
under another name should not export it to cleancut.

Names that merely point at where a secret lives (CLEANCUT_PASSWORD_FILE,
AWS_SHARED_CREDENTIALS_FILE) are withheld too: the child has no business
reading it. The password command is the one exception, run elsewhere with the
full environment: it is what produces the secret, and it may need a token to
fetch it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SECRET_PARTS = ("PASSW", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE")
SECRET_WORDS = frozenset({"KEY", "APIKEY", "PASS"})


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds (or locates) a secret."""
    upper = name.upper()
    if any(part in upper for part in SECRET_PARTS):
        return True
    return any(word in SECRET_WORDS for word in upper.split("_"))


def child_env(
    extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Our environment (or `base`) without secrets, plus `extra` (which is not filtered)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not is_secret_name(k)}
    env.update(extra or {})
    return env
