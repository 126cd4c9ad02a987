"""README's quick-start ("Using it"), run as written: every command of its ``sh`` block, in order, against a real
nats-server and an in-process sandboxd, each one exiting 0; ``watch`` until Ctrl-C, as a reader would stop it.

Only programs the README's own commands install may appear (``sandboxctl``; ``export``): a command that needs
another tool (the ``nats`` CLI) fails here, naming it.
"""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

import anyio
import pytest
from sandboxd_processes import SANDBOXCTL, clean_env, ctl

from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from support.spine import running_service, service_settings

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

README = Path(__file__).parents[3] / "README.md"


def quick_start() -> list[list[str]]:
    """The commands of the ``sh`` block under "Using it", split at ``;``, comments dropped."""
    section = README.read_text().split("## Using it", 1)[1]
    block = re.search(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    assert block is not None, "README's quick-start lost its sh block"
    commands: list[list[str]] = []
    for line in block.group(1).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
        lexer.whitespace_split, lexer.commenters = True, "#"
        command: list[str] = []
        for token in lexer:
            if token == ";":
                commands.append(command)
                command = []
            else:
                command.append(token)
        if command:
            commands.append(command)
    return commands


async def watch_until_ctrl_c(args: list[str], url: str, tmp_path: Path) -> int:
    out = tmp_path / "watch.out"
    with out.open("wb") as stdout:
        watcher = await anyio.open_process([*SANDBOXCTL, *args], stdout=stdout, env=clean_env(NATS_URL=url))
    try:
        with anyio.fail_after(30):
            while "watching for changes" not in out.read_text():
                await anyio.sleep(0.05)
            watcher.send_signal(signal.SIGINT)
            return await watcher.wait()
    finally:
        if watcher.returncode is None:
            watcher.kill()
        await watcher.aclose()


async def test_every_quick_start_command_works_as_written(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    commands = quick_start()
    programs = {command[0] for command in commands}
    assert programs <= {"export", "sandboxctl"}, f"README's quick-start needs what it does not install: {programs}"
    assert len(commands) >= 8
    url = fresh_nats_server.url
    async with running_service(service_settings(url), MemoryApplier()):
        for program, *args in commands:
            if program == "export":  # NATS_URL: the test's server takes the place of make run's
                assert [arg.split("=")[0] for arg in args] == ["NATS_URL"]
                continue
            if args[0] == "watch":
                assert await watch_until_ctrl_c(args, url, tmp_path) == 0
                continue
            done = await ctl(*args, url=url)
            assert done.returncode == 0, f"sandboxctl {shlex.join(args)}: {done.stderr}"
