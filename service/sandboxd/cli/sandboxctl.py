"""``sandboxctl``: publish sandbox lifecycle events and read their status, from a terminal or a script.

    sandboxctl create ID --email E --org O [--sessions N --repo ORG/REPO ...] | -f spec.yaml
    sandboxctl update ID ...                   the whole spec again (events are level-based)
    sandboxctl delete ID [--purge]             retain customer data unless --purge
    sandboxctl suspend ID [--reason TEXT] / resume ID
        every verb: [--force] (skip the existence check) [--wait [--timeout S]] (until settled)
    sandboxctl status [ID] [-o table|wide|name|json|yaml] [--phase P]... [--all]
    sandboxctl watch [ID] [-o table|json]      live changes until Ctrl-C
    sandboxctl dlq list | show SEQ | replay SEQ | replay --all
    sandboxctl completion bash|zsh / --version

Connection flags go before or after the command.

This module parses arguments and dispatches to ``cli.actions``; errors end as one line on stderr with exit code 1
(usage errors: 2, from argparse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import anyio

from sandboxd import __version__
from sandboxd.adapters.jetstream.errors import AUTHORIZATION_FAILED
from sandboxd.cli import actions
from sandboxd.cli.completion import SHELLS, completion_help, completion_script
from sandboxd.cli.connection import add_connection_flags, connected_client, nats_settings, seconds
from sandboxd.cli.events import add_spec_flags
from sandboxd.cli.exits import finish
from sandboxd.cli.output import FORMATS, STATUS_FORMATS
from sandboxd.cli.signals import until_interrupted
from sandboxd.cli.terminal import printable
from sandboxd.client import SandboxClient
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.status import Phase
from sandboxd.naming import SANDBOX_ID_RULE, SandboxId, as_sandbox_id
from sandboxd.settings import NatsSettings
from sandboxd.telemetry import logs, tracing

PROG = "sandboxctl"
DEFAULT_WAIT_S = 300.0
#: The pause between ``watch``'s attempts to reach a server that does not answer, s.
WATCH_RETRY_S = 1.0
Action = Callable[[argparse.Namespace, SandboxClient], Awaitable[int]]


def sandbox_id(text: str) -> SandboxId:
    """An argparse type: a sandbox id (anything else is a usage error, exit 2)."""
    checked = as_sandbox_id(text)
    if checked is None:
        raise argparse.ArgumentTypeError(f"{printable(repr(text))} is not a sandbox id: {SANDBOX_ID_RULE}")
    return checked


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Publish sandbox lifecycle events to NATS JetStream and read their status."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log connection details to stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_connection_flags(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, action: Action) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _add_global_flags(sub)
        sub.set_defaults(action=action)
        return sub

    for verb, text in (("create", "create a sandbox"), ("update", "replace a sandbox's spec")):
        sub = command(verb, text, actions.publish)
        sub.add_argument("id", type=sandbox_id, help="sandbox id (a DNS label)")
        add_spec_flags(sub)
        _add_event_id(sub)
    sub = command("delete", "delete a sandbox (retains its data unless --purge)", actions.publish)
    sub.add_argument("id", type=sandbox_id)
    sub.add_argument("--purge", action="store_true", help="also delete the namespace and the repo volumes")
    _add_event_id(sub)
    sub = command("suspend", "scale a sandbox to zero until resumed", actions.publish)
    sub.add_argument("id", type=sandbox_id)
    sub.add_argument("--reason", help="why (kept with the event)")
    _add_event_id(sub)
    sub = command("resume", "resume a suspended or idle sandbox", actions.publish)
    sub.add_argument("id", type=sandbox_id)
    sub.add_argument("--reason", help="why (kept with the event)")
    _add_event_id(sub)

    sub = command("status", "show every sandbox as a table, or one in detail", actions.status)
    sub.add_argument("id", nargs="?", type=sandbox_id, help="one sandbox (default: all but Deleted ones)")
    sub.add_argument(
        "-o", "--output", choices=STATUS_FORMATS, default="table", help="wide: more columns; name: ids only"
    )
    sub.add_argument("--phase", action="append", type=phase_of, metavar="PHASE", help="only these phases (repeatable)")
    sub.add_argument("-A", "--all", action="store_true", help="also Deleted sandboxes (hidden by default)")
    sub = command("watch", "print status changes as they happen (Ctrl-C to stop)", actions.watch)
    sub.add_argument("id", nargs="?", type=sandbox_id, help="one sandbox (default: all)")
    sub.add_argument("-o", "--output", choices=("table", "json"), default="table", help="json: one record a line")

    dlq = commands.add_parser("dlq", help="read and replay dead letters", description="dead letters (SANDBOX_DLQ)")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="DLQ_COMMAND")
    for name, text in (("list", "list dead letters"), ("show", "show one dead letter"), ("replay", "replay")):
        sub = dlq_commands.add_parser(name, help=text, description=text)
        _add_global_flags(sub)
        sub.set_defaults(action=actions.dlq)
        if name == "show":
            sub.add_argument("seq", type=int, help="dead-letter sequence (see dlq list)")
        if name == "replay":
            sub.add_argument("seq", type=int, nargs="?", help="dead-letter sequence (see dlq list)")
            sub.add_argument("--all", action="store_true", help="replay every dead letter")
        if name != "replay":
            sub.add_argument("-o", "--output", choices=FORMATS, default="table")
    completion = commands.add_parser(
        "completion", help="print a shell completion script", description=completion_help()
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(action=None)
    return parser


def _add_global_flags(sub: argparse.ArgumentParser) -> None:
    """The main parser's flags, accepted after the subcommand too (``sandboxctl status -s URL -v``)."""
    sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add_connection_flags(sub, global_flags=True)


def phase_of(text: str) -> Phase:
    for phase in Phase:
        if phase.value.lower() == text.lower():
            return phase
    raise argparse.ArgumentTypeError(f"{text!r} is not a phase: {', '.join(p.value for p in Phase)}")


def _add_event_id(sub: argparse.ArgumentParser) -> None:
    """The flags every publishing verb shares: its event id, --force, --wait [--timeout]."""
    sub.add_argument("--event-id", help="CloudEvents id (default: a new uuid4); reusing one is deduplicated")
    existing = "refuse an existing sandbox id" if sub.prog.endswith("create") else "refuse an unknown sandbox id"
    sub.add_argument(
        "--force", action="store_true", help=f"publish without checking the status first (else: {existing})"
    )
    sub.add_argument(
        "--wait",
        action="store_true",
        help="wait until sandboxd has settled the event (see docs/cli.md), like kubectl wait",
    )
    sub.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=DEFAULT_WAIT_S,
        help=f"with --wait: give up (exit 1) after this long (default {DEFAULT_WAIT_S:g})",
    )


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors argparse cannot express (exit code 2)."""
    if args.command in ("create", "update"):
        if args.file and (args.email or args.org):
            parser.error(f"{args.command}: give either -f SPEC or --email/--org, not both")
        if not args.file and not (args.email and args.org):
            parser.error(f"{args.command}: --email and --org are required (or -f SPEC)")
    if args.command == "dlq" and args.dlq_command == "replay" and args.all == (args.seq is not None):
        parser.error("dlq replay: give a dead-letter sequence or --all")


async def run(args: argparse.Namespace, redaction: logs.Redaction) -> int:
    with tracing.command_tracing():  # every publish carries a traceparent the service's spans and logs join
        return await _run(args, redaction)


async def _run(args: argparse.Namespace, redaction: logs.Redaction) -> int:
    settings = nats_settings(args, client_name=PROG, redaction=redaction)
    if args.command == "watch":  # a watch outlives server outages; other commands fail fast
        return await until_interrupted(partial(_watch, args, settings))
    async with connected_client(settings, timeout=args.connect_timeout) as client:
        result: int = await args.action(args, client)
        return result


async def _watch(args: argparse.Namespace, settings: NatsSettings) -> int:
    """``watch`` until Ctrl-C: a server that does not answer yet (or is restarting) is waited for, saying why once
    (and again if the reason changes), and the connection then says at once when it drops and when it is back.
    Credentials the server refuses end the watch (exit 1), as they end every other command."""
    said = ""  # the last reason given for waiting ("": none yet)
    while True:
        connected = False
        try:
            async with connected_client(
                settings, timeout=args.connect_timeout, reconnect=True, on_connection=_tell_connection
            ) as client:
                connected = True
                if said:
                    _tell(f"connected to NATS at {logs.without_credentials(settings.url)}; watching")
                result: int = await args.action(args, client)
                return result
        except BrokerUnavailable as exc:
            if connected or AUTHORIZATION_FAILED in exc.message:  # wrong credentials are no outage: as `status`
                raise
            if exc.message != said:  # why, once, and again only when the reason changes
                _tell(f"{exc.message}; trying again until it answers (Ctrl-C to stop)")
                said = exc.message
            await anyio.sleep(WATCH_RETRY_S)


def _tell_connection(up: bool) -> None:
    _tell("reconnected to NATS; watching again" if up else "disconnected from NATS; reconnecting (Ctrl-C to stop)")


def _tell(what: str) -> None:
    print(f"{PROG}: {printable(what)}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check(parser, args)
    if args.command == "completion":
        print(completion_script(parser, args.shell), end="")
        return 0
    redaction = logs.Redaction()  # taught the connection's secrets once they are read (``nats_settings``)
    logs.configure(default_format="text", level="INFO" if args.verbose else "ERROR", redaction=redaction)
    return finish(PROG, partial(run, args, redaction), redaction=redaction)


if __name__ == "__main__":
    sys.exit(main())
