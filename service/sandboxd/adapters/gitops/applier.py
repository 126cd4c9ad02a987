"""The GitOps applier: a sandbox's files under ``sandbox/<owner-uid>/`` of a git repository, one commit per change.

Each ``apply`` or ``delete`` is one read-compare-write against the remote branch, as upstream does:

1. fetch and reset the working clone to the remote branch (so "unchanged" is judged against the remote, not a
   stale clone);
2. make ``sandbox/<owner-uid>/`` hold exactly the rendered files (``sandboxd.render.files``) plus the
   PersistentVolumeClaims the folder already holds that are no longer rendered, marked retained
   (``sandboxd.adapters.folders.write_sandbox``: no pruning GitOps agent ever deletes a volume before a purge),
   after the Secret guard checked them;
3. ``git add --all`` that folder; nothing staged → no commit, ``changed=False`` (steady state writes nothing);
4. one commit (``sandboxd: reconcile sandbox <id> generation <n>``) and a push.

A push that loses a race with another writer (another replica with its own clone) goes back to step 1 after a
short, growing, jittered pause: the fetched tip gets this writer's folder re-applied on top, which is a rebase
of the one commit in which this writer's view of its own sandbox wins and every other folder is the remote's.
History stays linear; after ``Backoff.attempts`` lost races in a row the operation is ``ApplyUnavailable``.

Concurrency: one ``anyio.Lock`` per applier serialises every git operation on its clone; replicas each own a
clone (a fresh temporary folder under ``cache_dir``, removed by ``aclose``; a killed process's clone is removed
when the next process opens its own, see ``repository``) and meet only at the remote. An operation that fails or
is cancelled half-way may leave a lock file or a stray commit in the clone, so the next operation starts from a
new clone instead of trusting it.

Errors: git and OS failures become ``sandboxd.errors`` in ``_translated`` and nowhere else: refusals
(credentials, missing repository, a hook, a checked-out branch of a non-bare repository) are
``ApplyRejected``; anything else (unreachable, timed out, lost too many races) is ``ApplyUnavailable``.
Messages come from ``WorkingClone`` already redacted.

``delete``: a retained delete commits what ``sandboxd.render.retained`` keeps (Namespace, quota, claims: the
data, no access); a purge removes the folder, and a pruning agent then deletes the Namespace with everything in it.

What it deliberately does not do: know whether anything runs (``ready_replicas`` is None), or sign commits.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
from anyio import to_thread
from pydantic import SecretStr

from sandboxd.adapters.folders import FolderChange, object_refs, pruned, remove_folder, write_sandbox
from sandboxd.adapters.gitops.remote import Remote, parse_remote
from sandboxd.adapters.gitops.repository import CLONE_PREFIX, GitFailed, Identity, WorkingClone
from sandboxd.adapters.gitops.secret_guard import refuse_secret_values
from sandboxd.errors import ApplyRejected, ApplyUnavailable, ConfigurationError
from sandboxd.naming import gitops_folder
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render.model import RenderedSandbox
from sandboxd.render.retained import retained
from sandboxd.settings.service import ApplierSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses between push attempts, s: full jitter over ``base · 2^attempt``, capped."""

    attempts: int = 8
    base_s: float = 0.05
    cap_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


@dataclass(frozen=True, slots=True)
class _Published:
    #: What the folder describes now (None after a purge).
    written: RenderedSandbox | None
    change: FolderChange
    committed: bool


class GitOpsApplier:
    """Commits sandboxes' files to a git repository; implements ``sandboxd.reconcile.ports.Applier``."""

    def __init__(
        self,
        *,
        repo: str,
        branch: str = "main",
        author: str = "sandboxd <sandboxd@localhost>",
        username: str | None = None,
        password: SecretStr | None = None,
        cache_dir: Path | None = None,
        backoff: Backoff | None = None,
        git_timeout_s: float = 60.0,
    ) -> None:
        try:
            self.remote: Remote = parse_remote(repo, username=username, password=password)
            self._author = Identity.parse(author)
        except ValueError as exc:
            raise ConfigurationError(f"SANDBOXD_GITOPS_REPO / SANDBOXD_GITOPS_AUTHOR: {exc}") from exc
        self.branch = branch
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "sandboxd-gitops"
        self.backoff = backoff or Backoff()
        self.git_timeout_s = git_timeout_s
        self._lock = anyio.Lock()
        self._clone: WorkingClone | None = None
        self._suspect = False

    @classmethod
    def from_settings(cls, settings: ApplierSettings, *, cache_dir: Path | None = None) -> GitOpsApplier:
        return cls(
            repo=settings.gitops_repo,
            branch=settings.gitops_branch,
            author=settings.gitops_author,
            username=settings.gitops_username,
            password=settings.gitops_password,
            cache_dir=cache_dir,
        )

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        message = f"sandboxd: reconcile sandbox {sandbox.sandbox_id} generation {generation}"
        published = await self._publish(sandbox, sandbox, message)
        written = published.written or sandbox
        return ApplyResult(
            applied=object_refs(written.manifests),
            changed=published.committed,
            pruned=pruned(published.change.previous, written),
        )

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        if purge:
            await self._publish(sandbox, None, f"sandboxd: purge sandbox {sandbox.sandbox_id}")
        else:
            message = f"sandboxd: delete sandbox {sandbox.sandbox_id}, retaining its data"
            await self._publish(sandbox, retained(sandbox), message)

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        return None

    async def aclose(self) -> None:
        async with self._lock:
            if self._clone is not None:
                await to_thread.run_sync(shutil.rmtree, self._clone.path, True)
                self._clone = None

    async def _publish(self, sandbox: RenderedSandbox, tree: RenderedSandbox | None, message: str) -> _Published:
        """Make the sandbox's folder hold ``tree`` (None: nothing) on the remote branch; see the module doc."""
        folder = gitops_folder(sandbox.owner_uid)
        async with self._lock, self._translated():
            clone = await self._opened()
            try:
                return await self._commit_and_push(clone, folder, tree, message)
            except BaseException:
                # A failed, timed-out or cancelled git can leave a lock file or a half-made commit behind.
                self._suspect = True
                raise

    async def _commit_and_push(
        self, clone: WorkingClone, folder: str, tree: RenderedSandbox | None, message: str
    ) -> _Published:
        for attempt in range(self.backoff.attempts):
            await clone.sync()
            target = clone.path / folder
            written: RenderedSandbox | None = None
            if tree is None:
                change = await to_thread.run_sync(remove_folder, target)
            else:
                written, change = await to_thread.run_sync(
                    partial(write_sandbox, target, tree, check=refuse_secret_values)
                )
            if not await clone.stage(folder):
                return _Published(written=written, change=change, committed=False)
            await clone.commit(message)
            if await clone.push():
                log.info("committed %s to %s: %s", folder, self.remote.url, message)
                return _Published(written=written, change=change, committed=True)
            await anyio.sleep(self.backoff.delay(attempt))
        raise ApplyUnavailable(
            f"{self.remote.url}: pushing {folder} lost {self.backoff.attempts} races with other writers in a row",
        )

    async def _opened(self) -> WorkingClone:
        """The working clone, made afresh the first time and after any operation that failed half-way."""
        if self._clone is not None and self._suspect:
            log.info("discarding the GitOps working clone %s after a failed operation", self._clone.path)
            await to_thread.run_sync(shutil.rmtree, self._clone.path, True)
            self._clone = None
        if self._clone is None:
            path = await to_thread.run_sync(_new_clone_folder, self.cache_dir)
            self._clone = WorkingClone(
                path=path, remote=self.remote, branch=self.branch, author=self._author, timeout_s=self.git_timeout_s
            )
            self._suspect = False
        await self._clone.open()
        return self._clone

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """The one place git and file-system failures become ``sandboxd.errors``."""
        where = f"GitOps repository {self.remote.url} ({self.branch})"
        try:
            yield
        except GitFailed as exc:
            error = ApplyRejected if exc.refused else ApplyUnavailable
            raise error(f"{where}: {exc}") from exc
        except ValueError as exc:  # a rendered file name that would leave the sandbox folder
            raise ApplyRejected(f"{where}: {exc}") from exc
        except OSError as exc:
            raise ApplyUnavailable(f"{where}: {self.remote.redact(str(exc))}") from exc


def _new_clone_folder(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=CLONE_PREFIX, dir=cache_dir))  # the prefix the stale-clone sweep knows
