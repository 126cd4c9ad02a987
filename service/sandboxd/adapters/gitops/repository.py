"""The git plumbing of the GitOps applier: one working clone driven through the real ``git`` CLI.

``WorkingClone`` is a plain (non-bare) repository under a cache folder whose ``origin`` is the GitOps
repository and whose HEAD is the configured branch. It knows a handful of operations: create a missing local
bare repository, fetch and reset to the remote branch, stage one folder, commit, push. It does not decide what
to write, when to retry, or which ``sandboxd.errors`` a failure is; every failure is a ``GitFailed`` whose text
is already redacted, and the applier translates it.

Every git process gets a fixed environment: ``LC_ALL=C`` (messages are parsed), no terminal prompts, the commit
identity from ``SANDBOXD_GITOPS_AUTHOR``, no commit signing, and (only when there are HTTP credentials) a
credential helper that prints them from two environment variables of that one process. Credentials therefore
never appear in argv, in the clone's ``.git/config``, or in a message. Each git process runs under a timeout.

Not safe for concurrent use: the applier holds one lock around every sequence of operations.

Stale clones: a process that is killed (SIGKILL, an OOM kill) cannot remove its clone, and a pod's emptyDir
keeps it. So each clone is claimed by its process with an advisory lock (``flock``) on
``.git/sandboxd-owner.lock``, which the kernel releases when the process ends however it ends; when a clone is
opened, the ``clone-*`` folders beside it whose lock nobody holds are removed (``remove_stale_clones``). A
live clone of another process on the same host (another replica sharing ``$TMPDIR``) is locked and never
touched. A ``clone-*`` folder without a lock file is removed only once it is ``UNCLAIMED_STALE_S`` old: it was
left by a process that died between creating it and claiming it (milliseconds), or by a version without locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
from anyio import to_thread

from sandboxd.adapters.gitops.remote import Remote

log = logging.getLogger(__name__)

#: Inherited variables that would point git at some other repository than the one named by ``-C``.
_REPOSITORY_VARIABLES: Final = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_COMMON_DIR",
        "GIT_CONFIG_PARAMETERS",
    }
)
_USERNAME_VARIABLE: Final = "SANDBOXD_GIT_USERNAME"
_PASSWORD_VARIABLE: Final = "SANDBOXD_GIT_PASSWORD"  # noqa: S105 - the variable's name, not a password
#: Runs in ``sh`` for ``git credential fill``: prints the credentials of this process's environment.
_CREDENTIAL_HELPER: Final = (
    f'!f() {{ test "$1" = get || exit 0; printf "username=%s\\npassword=%s\\n" '
    f'"${_USERNAME_VARIABLE}" "${_PASSWORD_VARIABLE}"; }}; f'
)
#: ``[remote rejected]`` reasons that mean another writer moved the branch at the same moment.
_LOST_RACE: Final = re.compile(r"cannot lock ref|failed to lock|failed to update ref|incorrect old value|but expected")
#: stderr that means the repository refused us for good (wrong credentials, no such repository, a hook).
_REFUSAL: Final = re.compile(
    r"Authentication failed|could not read (Username|Password)|returned error: (401|403|404)"
    r"|[Rr]epository not found|does not appear to be a git repository|\[remote rejected\]"
    r"|not a git repository|Permission denied|denied to"
)
_AUTHOR: Final = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+)>\s*$")
#: The name every working clone folder starts with (``GitOpsApplier`` makes them); nothing else is swept.
CLONE_PREFIX: Final = "clone-"
#: Inside the clone's ``.git`` (no git command touches it): locked by the process that owns the clone.
OWNER_LOCK: Final = "sandboxd-owner.lock"
#: A clone folder that has no owner lock file is stale once it is this old, s (see the module docstring).
UNCLAIMED_STALE_S: Final = 3600.0


class GitFailed(Exception):
    """A git command failed; the text never holds credentials. ``refused``: retrying cannot help."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str

    @classmethod
    def parse(cls, author: str) -> Identity:
        """``Name <email>`` → Identity; ``ValueError`` otherwise."""
        match = _AUTHOR.match(author)
        if match is None:
            raise ValueError(f"commit author {author!r} is not 'Name <email>'")
        return cls(name=match["name"], email=match["email"])


class WorkingClone:
    """A working clone at ``path`` of ``remote``'s ``branch``; see the module docstring."""

    def __init__(self, *, path: Path, remote: Remote, branch: str, author: Identity, timeout_s: float = 60.0) -> None:
        self.path = path
        self.remote = remote
        self.branch = branch
        self.timeout_s = timeout_s
        self._env = _environment(remote, author)
        self._opened = False
        #: Closes the file descriptor that holds the owner lock: at ``close``, or when the clone is dropped.
        self._owner: weakref.finalize[[int], WorkingClone] | None = None

    @property
    def remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    async def open(self) -> None:
        """Create the local bare repository if it is missing, then the clone; idempotent."""
        if self._opened:
            return
        local = self.remote.local_path
        if local is not None and await to_thread.run_sync(_is_missing, local):
            await self._create_bare(local)
        if not (self.path / ".git").exists():
            await self.git("init", "--quiet", f"--initial-branch={self.branch}", ".")
            # Fetch every branch (the default refspec): a missing branch is then simply absent, not an error.
            await self.git("remote", "add", "origin", self.remote.url)
        if self._owner is None:
            await to_thread.run_sync(self._claim)
        self._opened = True

    def _claim(self) -> None:
        """Lock this clone as this process's, then remove the stale clones beside it."""
        self._owner = weakref.finalize(self, _release, claim_clone(self.path))
        removed = remove_stale_clones(self.path.parent)
        if removed:
            log.info("removed %d stale GitOps working clones under %s", len(removed), self.path.parent)

    def close(self) -> None:
        """Give up the owner lock (the folder is the caller's to remove); idempotent."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner()  # a finalizer runs at most once, so the descriptor is never closed twice

    async def _create_bare(self, local: Path) -> None:
        """``git init --bare`` beside ``local``, then renamed into place: a writer racing us sees all or none."""
        staging = local.with_name(f".{local.name}.init-{secrets.token_hex(4)}")
        args = ("init", "--quiet", "--bare", f"--initial-branch={self.branch}", str(staging))
        await to_thread.run_sync(lambda: local.parent.mkdir(parents=True, exist_ok=True))
        code, _, err = await self._run(args, cwd=None)
        if code != 0:
            raise _failure(args, code, err)
        if await to_thread.run_sync(_move_into_place, staging, local):
            log.info("created a bare GitOps repository at %s (branch %s)", local, self.branch)

    async def sync(self) -> None:
        """Fetch, then make HEAD, index and files exactly the remote branch (empty while it does not exist)."""
        await self.git("fetch", "--quiet", "--prune", "--no-tags", "origin")
        if await self.has_ref(self.remote_ref):
            await self.git("reset", "--quiet", "--hard", self.remote_ref)
        else:
            await self.git("update-ref", "-d", f"refs/heads/{self.branch}")
            await self.git("read-tree", "--empty")
        await self.git("clean", "--quiet", "-ffdx")

    async def stage(self, folder: str) -> bool:
        """Stage every change under ``folder`` (its removal too); whether anything is staged for commit."""
        if (self.path / folder).exists():
            await self.git("add", "--all", "--", folder)
        else:  # ``git add`` refuses a pathspec that matches no file
            await self.git("rm", "-r", "--quiet", "--cached", "--ignore-unmatch", "--", folder)
        staged = await self.git("diff", "--cached", "--name-only", "--", folder)
        return bool(staged.strip())

    async def commit(self, message: str) -> None:
        await self.git("commit", "--quiet", "--no-verify", "--message", message)

    async def push(self) -> bool:
        """Push HEAD to the branch: True when it landed, False when another writer moved the branch first."""
        target = f"HEAD:refs/heads/{self.branch}"
        code, out, err = await self._run(("push", "--porcelain", "origin", target), cwd=self.path)
        if code == 0:
            return True
        rejected = [line for line in out.splitlines() if line.startswith("!")]
        if any("[rejected]" in line or _LOST_RACE.search(line) for line in rejected):
            log.info("push to %s lost a race with another writer: %s", self.remote.url, "; ".join(rejected))
            return False
        raise _failure(("push",), code, "\n".join([*rejected, err]))

    async def has_ref(self, ref: str) -> bool:
        code, _, _ = await self._run(("rev-parse", "--verify", "--quiet", ref), cwd=self.path)
        return code == 0

    async def git(self, *args: str) -> str:
        """Run ``git args`` in the clone; its stdout, or ``GitFailed``."""
        code, out, err = await self._run(args, cwd=self.path)
        if code != 0:
            raise _failure(args, code, err)
        return out

    async def _run(self, args: tuple[str, ...], *, cwd: Path | None) -> tuple[int, str, str]:
        command = ["git", *args]
        log.debug("git %s (in %s)", " ".join(args), cwd)  # argv never holds credentials
        try:
            with anyio.fail_after(self.timeout_s):
                done = await anyio.run_process(command, cwd=cwd, env=self._env, check=False)
        except TimeoutError as exc:
            raise GitFailed(f"git {args[0]} did not finish within {self.timeout_s:g}s") from exc
        except OSError as exc:
            raise GitFailed(f"git {args[0]} could not run: {exc}") from exc
        return done.returncode, self._text(done.stdout), self._text(done.stderr)

    def _text(self, raw: bytes) -> str:
        return self.remote.redact(raw.decode(errors="replace"))


def claim_clone(path: Path) -> int:
    """Lock ``path``'s owner lock file for this process; the open file descriptor that holds the lock.

    The lock file is made under a temporary name, locked, then renamed into place, so no one ever sees an owner
    lock file that is not locked yet.
    """
    staging = path / ".git" / f"{OWNER_LOCK}.{secrets.token_hex(4)}"
    descriptor = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(descriptor, f"{os.getpid()}\n".encode())  # for people; the lock is what counts
        staging.rename(path / ".git" / OWNER_LOCK)
    except OSError:
        os.close(descriptor)
        staging.unlink(missing_ok=True)
        raise
    return descriptor


def remove_stale_clones(cache_dir: Path, *, now: float | None = None) -> list[Path]:
    """Remove the ``clone-*`` folders under ``cache_dir`` no live process owns; the folders removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        candidates = [entry for entry in cache_dir.iterdir() if entry.name.startswith(CLONE_PREFIX)]
    except OSError:
        return removed
    for folder in candidates:
        if _remove_if_stale(folder, now=now):
            removed.append(folder)
    return removed


def _remove_if_stale(folder: Path, *, now: float) -> bool:
    try:
        descriptor = os.open(folder / ".git" / OWNER_LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return _remove_if_unclaimed(folder, now=now)
    except OSError:
        return False  # not ours to judge (a permission, a file where a folder should be)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False  # its process is alive
    try:  # locked by us now: no other sweeper removes it at the same time
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(descriptor)
    return True


def _remove_if_unclaimed(folder: Path, *, now: float) -> bool:
    try:
        age = now - folder.stat().st_mtime
    except OSError:
        return False
    if not folder.is_dir() or age < UNCLAIMED_STALE_S:
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def _release(descriptor: int) -> None:
    with contextlib.suppress(OSError):
        os.close(descriptor)  # closing the only descriptor of the lock file releases the lock


def _is_missing(local: Path) -> bool:
    """No repository yet: the path does not exist, or is an empty folder."""
    return not local.exists() or (local.is_dir() and not any(local.iterdir()))


def _move_into_place(staging: Path, local: Path) -> bool:
    """Rename ``staging`` to ``local`` (an empty folder there is replaced); False when another writer won."""
    try:
        staging.rename(local)
    except OSError:
        if _is_missing(local):
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


def _failure(args: tuple[str, ...], code: int, stderr: str) -> GitFailed:
    detail = " | ".join(line.strip() for line in stderr.strip().splitlines() if line.strip()) or "no message"
    return GitFailed(f"git {args[0]} failed ({code}): {detail}", refused=bool(_REFUSAL.search(stderr)))


def _environment(remote: Remote, author: Identity) -> Mapping[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_VARIABLES}
    env.update(
        LC_ALL="C",
        LANGUAGE="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=author.name,
        GIT_AUTHOR_EMAIL=author.email,
        GIT_COMMITTER_NAME=author.name,
        GIT_COMMITTER_EMAIL=author.email,
    )
    config = [("commit.gpgsign", "false"), ("core.autocrlf", "false"), ("core.hooksPath", os.devnull)]
    if remote.has_credentials:
        # An empty helper first: no system or user helper may store or supply other credentials.
        config += [("credential.helper", ""), ("credential.helper", _CREDENTIAL_HELPER)]
        env[_USERNAME_VARIABLE] = remote.username or ""
        env[_PASSWORD_VARIABLE] = remote.password.get_secret_value() if remote.password else ""
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env
