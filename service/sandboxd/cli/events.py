"""The spec of ``sandboxctl create``/``update``, from flags or a spec file (camelCase, as on the wire).

Every event gets a fresh CloudEvents id (uuid4) unless ``--event-id`` names one (a script that retries a publish
with the same id is deduplicated by JetStream), ``source`` ``sandboxctl``. The client (``client.events``)
validates the spec and builds the event, naming every problem before anything is published.

What it deliberately does not do: validate or publish (``sandboxd.client`` does both).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

import yaml

from sandboxd.cli.exits import CommandError
from sandboxd.models.spec import Agent
from sandboxd.render.quantities import format_bytes, format_cpu
from sandboxd.render.resources import MCP_RESOURCES

SOURCE: Final = "sandboxctl"
DEFAULT_CPU: Final = "2"
DEFAULT_MEMORY: Final = "4Gi"
DEFAULT_STORAGE: Final = "20Gi"
DEFAULT_SESSIONS: Final = 1
#: What an MCP companion over HTTP gets on top of the session pods' quota (docs/events.md, "The spec").
COMPANION_CPU: Final = format_cpu(MCP_RESOURCES.cpu_limit_m)
COMPANION_MEMORY: Final = format_bytes(MCP_RESOURCES.memory_limit)


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``create`` and ``update``: the whole spec (events are level-based, never patches)."""
    parser.add_argument("-f", "--file", metavar="SPEC", help="YAML or JSON file holding the spec (or {spec: ...})")
    parser.add_argument("--email", help="owner email (the namespace derives from it)")
    parser.add_argument("--org", help="owner organisation slug")
    parser.add_argument(
        "--cpu",
        default=DEFAULT_CPU,
        help="CPU the session pods share, split evenly between them; an MCP companion over HTTP "
        f"(SANDBOX_MCP_TRANSPORT=http) gets its own {COMPANION_CPU} on top (default {DEFAULT_CPU})",
    )
    parser.add_argument(
        "--memory",
        default=DEFAULT_MEMORY,
        help="memory the session pods share, split like --cpu; an MCP companion over HTTP gets its own "
        f"{COMPANION_MEMORY} on top (default {DEFAULT_MEMORY})",
    )
    parser.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"storage the namespace may request, the repo volumes together (default {DEFAULT_STORAGE})",
    )
    parser.add_argument(
        "--sessions", type=int, default=DEFAULT_SESSIONS, help=f"concurrent sessions 1-10 (default {DEFAULT_SESSIONS})"
    )
    parser.add_argument("--repo", action="append", default=[], metavar="ORG/REPO", help="a Gitea repo (repeatable)")
    parser.add_argument(
        "--agent", action="append", default=[], choices=[a.value for a in Agent], help="an agent CLI (repeatable)"
    )
    parser.add_argument("--plan", help="plan id, e.g. sandbox-pro")
    parser.add_argument("--capability", action="append", default=[], help="a capability (repeatable)")
    parser.add_argument("--preview-domain", help="preview domain, e.g. preview.acme.io")
    parser.add_argument("--idle-timeout-minutes", type=int, help="idle timeout of this sandbox")
    parser.add_argument("--no-idle-scaling", action="store_true", help="never scale this sandbox down when idle")


def spec_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The spec (camelCase, as on the wire) that the flags describe."""
    spec: dict[str, Any] = {
        "owner": {"email": args.email, "orgRef": {"slug": args.org}},
        "quota": {
            "cpu": args.cpu,
            "memory": args.memory,
            "storage": args.storage,
            "concurrentSessions": args.sessions,
        },
        "repos": [{"giteaRepo": repo} for repo in args.repo],
        "agentCatalogue": list(args.agent),
        "capabilities": list(args.capability),
    }
    optional = {"planId": args.plan, "previewDomain": args.preview_domain}
    spec.update({key: value for key, value in optional.items() if value is not None})
    if args.no_idle_scaling or args.idle_timeout_minutes is not None:
        idle: dict[str, Any] = {"enabled": not args.no_idle_scaling}
        if args.idle_timeout_minutes is not None:
            idle["timeoutMinutes"] = args.idle_timeout_minutes
        spec["idleScaling"] = idle
    return spec


def spec_from_file(path: str) -> dict[str, Any]:
    """A spec file: the spec itself, or a mapping with a ``spec`` key (an event's ``data``, a CR-like file)."""
    try:
        document = yaml.safe_load(Path(path).expanduser().read_text())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CommandError(f"{path} is neither YAML nor JSON: {' '.join(str(exc).split())}") from exc
    if isinstance(document, dict) and isinstance(document.get("spec"), dict):
        document = document["spec"]
    if not isinstance(document, dict):
        raise CommandError(f"{path} does not hold a spec (a mapping with owner and quota)")
    return document
