"""What each ``sandboxctl`` command does once its arguments are parsed: publish, read, watch, replay.

Each action takes the parsed arguments and a connected ``SandboxClient``, prints to stdout, and returns the exit
code; failures raise (``cli.exits`` prints them as one line). Publishing and reading the projection go through
the client (the CloudEvents id as ``Nats-Msg-Id``, so a re-published event is deduplicated); dead letters are
an operator's business and read here through ``cli.deadletters``.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import aclosing
from typing import Any

from nats.js import JetStreamContext

from sandboxd.cli import deadletters, output
from sandboxd.cli.events import spec_from_file, spec_from_flags
from sandboxd.cli.exits import OK
from sandboxd.cli.terminal import printable
from sandboxd.client import Published, SandboxClient, StatusUnreadable, settled
from sandboxd.models.status import SandboxStatus


def _print(text: str) -> None:
    """Text for a reader: laid out by the CLI, its values publisher-chosen (``terminal.printable``)."""
    print(printable(text, lines=True), flush=True)


def _emit(text: str) -> None:
    """JSON or YAML for a script: every value as stored."""
    print(text, flush=True)


def _warn(text: str) -> None:
    """A warning for a reader, on stderr: the command goes on."""
    print(f"sandboxctl: warning: {printable(text)}", file=sys.stderr, flush=True)


def _skipped(unreadable: StatusUnreadable) -> None:
    """What ``status`` and ``watch`` say of a status record they cannot read: one line naming its key."""
    _warn(output.unreadable_record(unreadable.sandbox_id))


def _formatted(data: Any, fmt: str) -> str:
    return output.as_yaml(data) if fmt == "yaml" else output.as_json(data)


# --- publishing ---------------------------------------------------------------------------------------------


async def publish(args: argparse.Namespace, client: SandboxClient) -> int:
    """Publish the verb's event (refusing a typo unless --force), then with --wait wait until it settled."""
    done = await _send(args, client, force=args.force)
    if done.duplicate:
        _print(
            f"{done.subject}: duplicate of stream sequence {done.sequence} "
            f"(event id {done.event_id} was already published)"
        )
    else:
        _print(f"{done.subject}: published as stream sequence {done.sequence} (event id {done.event_id})")
    if args.wait:
        status = await client.wait_for(done.sandbox_id, settled(done), timeout=args.timeout)
        if status is None:
            _print(f"sandbox {done.sandbox_id}: gone (no status left)")
        else:
            _print(f"sandbox {done.sandbox_id}: {status.phase.value} ({output.short(output.message_of(status))})")
    return OK


async def _send(args: argparse.Namespace, client: SandboxClient, *, force: bool) -> Published:
    verb, sid, event_id = args.command, args.id, args.event_id
    if verb in ("create", "update"):
        spec = spec_from_file(args.file) if args.file else spec_from_flags(args)
        if verb == "create":
            return await client.create(sid, spec, event_id=event_id, force=force)
        return await client.update(sid, spec, event_id=event_id, force=force)
    if verb == "delete":
        return await client.delete(sid, purge=bool(args.purge), event_id=event_id, force=force)
    if verb == "suspend":
        return await client.suspend(sid, reason=args.reason, event_id=event_id, force=force)
    return await client.resume(sid, reason=args.reason, event_id=event_id, force=force)


# --- reading the projection ---------------------------------------------------------------------------------


async def status(args: argparse.Namespace, client: SandboxClient) -> int:
    """One sandbox in detail, or a table of every one (without Deleted unless --all; only --phase if given)."""
    now, fmt = output.now_utc(), args.output
    if args.id:
        one = await client.get(args.id)
        if fmt == "table":
            _print(output.status_detail(one, now))
        elif fmt in ("wide", "name"):
            _print(one.sandbox_id if fmt == "name" else output.status_table([one], now, wide=True))
        else:
            _emit(_formatted(output.wire(one), fmt))
        return OK
    every = await client.list(phases=args.phase, gone=bool(args.all or args.phase), on_unreadable=_skipped)
    if fmt in ("table", "wide"):
        _print(output.status_table(every, now, wide=fmt == "wide"))
    elif fmt == "name":
        if every:
            _print("\n".join(s.sandbox_id for s in every))
    else:
        _emit(_formatted([output.wire(s) for s in every], fmt))
    return OK


async def watch(args: argparse.Namespace, client: SandboxClient) -> int:
    """The current state (a table, or JSON lines), then one line per change until interrupted; a record that does
    not parse is a warning on stderr, in its place."""
    initial: list[SandboxStatus] = []
    unreadable: list[str] = []  # the keys of current records that do not parse
    live = False

    def skipped(error: StatusUnreadable) -> None:
        _skipped(error)
        if not live:
            unreadable.append(error.sandbox_id)

    async with aclosing(client.watch(args.id, on_unreadable=skipped)) as changes:
        async for change in changes:
            if change is None:
                if not live:
                    live = True
                    _show_initial(initial, unreadable, args)
                continue
            if not live:
                if change.status is not None:
                    initial.append(change.status)
                continue
            if args.output == "json":
                record = output.wire(change.status) if change.status else {"sandboxId": change.sandbox_id}
                _emit(_json_line(record))
            else:
                _print(output.watch_line(change.sandbox_id, change.status, output.now_utc()))
    return OK


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _show_initial(initial: list[SandboxStatus], unreadable: list[str], args: argparse.Namespace) -> None:
    if args.output == "json":
        for one in initial:
            _emit(_json_line(output.wire(one)))
        return
    if initial:
        _print(output.status_table(sorted(initial, key=lambda s: s.sandbox_id), output.now_utc()))
    elif args.id and unreadable:
        _print(f"sandbox {args.id}: its status record is unreadable; waiting for changes (Ctrl-C to stop)")
    elif unreadable:
        _print(f"No readable sandboxes yet ({len(unreadable)} skipped); waiting for changes (Ctrl-C to stop)")
    elif args.id:
        _print(f"sandbox {args.id} has no status yet; waiting for changes (Ctrl-C to stop)")
    else:
        _print("No sandboxes yet; waiting for changes (Ctrl-C to stop)")
    _print("--- watching for changes (Ctrl-C to stop)")


# --- dead letters -------------------------------------------------------------------------------------------


async def dlq(args: argparse.Namespace, client: SandboxClient) -> int:
    js, now = client.nc.jetstream(), output.now_utc()
    if args.dlq_command == "list":
        letters = await deadletters.list_dead_letters(js)
        if args.output == "table":
            _print(output.dead_letter_table(letters, now))
        else:
            _emit(_formatted([output.dead_letter_record(d) for d in letters], args.output))
        return OK
    if args.dlq_command == "show":
        letter = await deadletters.get_dead_letter(js, args.seq)
        if args.output == "table":
            _print(output.dead_letter_detail(letter, now))
        else:
            _emit(_formatted(output.dead_letter_record(letter), args.output))
        return OK
    return await _replay(args, js)


async def _replay(args: argparse.Namespace, js: JetStreamContext) -> int:
    if args.all:
        letters = await deadletters.list_dead_letters(js)
        if not letters:
            _print("No dead letters to replay.")
    else:
        letters = [await deadletters.get_dead_letter(js, args.seq)]
    for letter in letters:
        sequence, duplicate = await deadletters.replay(js, letter)
        what = "already replayed as" if duplicate else "replayed as"
        _print(
            f"dead letter {letter.sequence} ({letter.original_subject}) {what} stream sequence {sequence} "
            f"with id {letter.replay_id()}"
        )
    return OK
