"""`cleancut key list|add|passwd|remove`: the repository's key slots (passphrases).

Passphrases are key slots that wrap the same master keys (repository/keys.py): adding,
changing or removing one re-encrypts no data. The slot the repository was opened
with is never removed while another exists, and the last slot never.
"""

from __future__ import annotations

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.passphrase import read_new_passphrase
from cleancut.errors import CleancutError


@click.group("key")
def command() -> None:
    """Manage key slots (passphrases)."""


@command.command("list")
@common_options
def key_list(common: Common) -> None:
    """List key slots."""
    repo = common.open()
    try:
        slots = repo.keyring.slots()
        current = repo.keyring.open(common.passphrase())[1]
    finally:
        repo.close()
    if common.json:
        common.emit(
            [
                {
                    "id": s.id,
                    "created": s.created,
                    "host": s.host,
                    "user": s.user,
                    "current": s.id == current,
                    "kdf": vars(s.kdf),
                }
                for s in slots
            ]
        )
        return
    for s in slots:
        mark = "*" if s.id == current else " "
        click.echo(f"{mark} {s.id}  {s.created}  {s.user}@{s.host}")


@command.command("add")
@click.option(
    "--new-password-file",
    type=click.Path(dir_okay=False),
    help="Read the new passphrase from this file (else CLEANCUT_NEW_PASSWORD or a prompt).",
)
@common_options
def key_add(common: Common, new_password_file: str | None) -> None:
    """Add a passphrase."""
    repo = common.open()
    try:
        ring = repo.keyring
        # The new slot costs what the current one does (init's --kdf-* choice).
        slot = ring.add(
            repo.keys, read_new_passphrase(new_password_file), ring.kdf_of(repo.slot_id)
        )
    finally:
        repo.close()
    common.emit({"added": slot}) if common.json else common.say(f"added key slot {slot}")


@command.command("passwd")
@click.option(
    "--new-password-file",
    type=click.Path(dir_okay=False),
    help="Read the new passphrase from this file (else CLEANCUT_NEW_PASSWORD or a prompt).",
)
@common_options
def key_passwd(common: Common, new_password_file: str | None) -> None:
    """Change the passphrase of the slot that opens with the current one."""
    repo = common.open()
    try:
        ring = repo.keyring
        # Refused before the new slot is added, not half-way (the old one cannot be removed).
        repo.refuse_if_append_only("changing a passphrase")
        _keys, old = ring.open(common.passphrase())
        new = ring.add(repo.keys, read_new_passphrase(new_password_file), ring.kdf_of(old))
        ring.remove(old)
    finally:
        repo.close()
    common.emit({"added": new, "removed": old}) if common.json else common.say(
        f"passphrase changed: slot {old} replaced by {new}"
    )


@command.command("remove")
@click.argument("slot_id")
@common_options
def key_remove(common: Common, slot_id: str) -> None:
    """Remove a key slot (never the last one)."""
    repo = common.open()
    try:
        ring = repo.keyring
        current = ring.open(common.passphrase())[1]
        if current.startswith(slot_id) and len(ring.slot_ids()) > 1:
            raise CleancutError(
                "refusing to remove the slot you opened the repository with; "
                "open with another passphrase to remove it"
            )
        removed = ring.remove(slot_id)
    finally:
        repo.close()
    common.emit({"removed": removed}) if common.json else common.say(f"removed key slot {removed}")
