"""pytest fixtures for tests that need a real Kubernetes API (``@pytest.mark.kube``).

Load with ``pytest_plugins = ["support.kube_fixtures"]``.

* ``kube_api`` (session): a :class:`KubeTarget` with ``.kubeconfig_path``, ``api_client()`` (an async
  context manager yielding a kubernetes_asyncio ``ApiClient``) and ``.server`` (the local
  :class:`~support.kubeapi.KubeAPIServer`, or None for an external cluster).
* ``kube_unique_name`` (function): ``kube_unique_name("sbx")`` -> a fresh DNS-1123 name for this test.
* ``kube_namespace`` (function): a fresh namespace for this test, deleted afterwards.

Where the API comes from, in order:
1. ``SANDBOX_TEST_KUBECONFIG=<kubeconfig>``: that existing cluster (it must already have the Gateway
   API CRDs); nothing is started.
2. A local etcd + kube-apiserver (tools/kube/build.sh's cache, or ``SANDBOXD_KUBE_BIN``). When the
   cache is missing and Go is on PATH, the binaries are built once, right after collection when a
   ``kube`` test was collected (outside any per-test timeout), else inside the fixture.
3. No Go and no variable: the tests are skipped with one line saying how to enable them, except
   with ``CI=true``, where that is a failure. A build or start failure is always a failure.

``SANDBOX_TEST_KEEP_NAMESPACES=1`` keeps per-test namespaces for debugging.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from support.kubeapi import (
    ENV_KUBE_BIN,
    KubeAPIServer,
    KubeBinariesMissing,
    KubeHarnessError,
    build_kube_bin,
    cached_kube_bin,
    find_kube_bin,
    go_available,
)

ENV_EXTERNAL_KUBECONFIG = "SANDBOX_TEST_KUBECONFIG"
ENV_KEEP_NAMESPACES = "SANDBOX_TEST_KEEP_NAMESPACES"
TEST_LABEL = "sandboxd.test/harness"

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@dataclass
class KubeTarget:
    """What a kube test talks to."""

    kubeconfig_path: Path
    server: KubeAPIServer | None = None  # None when SANDBOX_TEST_KUBECONFIG points at an existing cluster

    @property
    def external(self) -> bool:
        return self.server is None

    async def new_api_client(self) -> Any:
        """A new kubernetes_asyncio ApiClient for this cluster; the caller must ``await client.close()``."""
        return await config.new_client_from_config(config_file=str(self.kubeconfig_path))

    @asynccontextmanager
    async def api_client(self) -> AsyncIterator[Any]:
        """``async with kube_api.api_client() as api: CoreV1Api(api)...``"""
        client = await self.new_api_client()
        try:
            yield client
        finally:
            await client.close()

    def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``await fn(api_client)`` to completion from synchronous code (own thread and event loop,
        so it is safe whether or not the caller's thread has a loop)."""

        async def go() -> T:
            async with self.api_client() as api:
                return await fn(api)

        with ThreadPoolExecutor(1, thread_name_prefix="kube-fixture") as ex:
            return ex.submit(asyncio.run, go()).result()


# --------------------------------------------------------------------------------------------
# Build once after collection (outside any test timeout) when kube tests were collected
# --------------------------------------------------------------------------------------------

_state: dict[str, str] = {}  # "build_error" -> message, set by pytest_collection_finish


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.get_closest_marker("kube") for item in session.items):
        return
    if os.environ.get(ENV_EXTERNAL_KUBECONFIG) or os.environ.get(ENV_KUBE_BIN):
        return
    if session.config.option.collectonly:
        return
    try:
        _, complete = cached_kube_bin()
    except KubeHarnessError as e:
        _state["build_error"] = str(e)
        return
    if complete or not go_available():
        return
    capman = session.config.pluginmanager.getplugin("capturemanager")
    ctx = capman.global_and_fixture_disabled() if capman is not None else nullcontext()
    with ctx:
        try:
            build_kube_bin(stream=sys.stderr)
        except KubeHarnessError as e:
            _state["build_error"] = str(e)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube_api() -> Iterator[KubeTarget]:
    external = os.environ.get(ENV_EXTERNAL_KUBECONFIG)
    if external:
        path = Path(external).expanduser()
        if not path.is_file():
            pytest.fail(f"{ENV_EXTERNAL_KUBECONFIG}={external}: no such kubeconfig file")
        yield KubeTarget(kubeconfig_path=path)
        return

    if "build_error" in _state:
        pytest.fail(f"building the kube test binaries failed: {_state['build_error']}")
    try:
        bin_dir = find_kube_bin(build=True)
    except KubeBinariesMissing as e:
        msg = (
            f"{e}; to enable: install Go >= 1.26 (the fixture then runs tools/kube/build.sh) "
            f"or set {ENV_EXTERNAL_KUBECONFIG}=<kubeconfig>"
        )
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    except KubeHarnessError as e:
        pytest.fail(f"kube test binaries unavailable: {e}")

    try:
        server = KubeAPIServer.start(bin_dir)
    except KubeHarnessError as e:
        pytest.fail(f"kube-apiserver failed to start: {e}")
    try:
        yield KubeTarget(kubeconfig_path=server.kubeconfig_path, server=server)
    finally:
        server.stop()


_DNS_BAD = re.compile(r"[^a-z0-9-]+")


def unique_name(prefix: str, hint: str = "", max_len: int = 63) -> str:
    """A DNS-1123 label ``<prefix>-<hint>-<6 hex>``, at most ``max_len`` characters."""
    suffix = secrets.token_hex(3)
    parts = [p for p in (_DNS_BAD.sub("-", prefix.lower()).strip("-"), _DNS_BAD.sub("-", hint.lower()).strip("-")) if p]
    head = "-".join(parts) or "t"
    head = head[: max_len - len(suffix) - 1].rstrip("-")
    name = f"{head}-{suffix}"
    if not name[0].isalpha():
        name = ("t" + name)[:max_len]
    return name


@pytest.fixture
def kube_unique_name(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``kube_unique_name("sbx")`` -> e.g. ``sbx-test-apply-3fa9c1``; fresh on every call."""
    hint = request.node.name.removeprefix("test_").split("[", 1)[0][:20]

    def make(prefix: str = "t", max_len: int = 63) -> str:
        return unique_name(prefix, hint, max_len)

    return make


@pytest.fixture
def kube_namespace(kube_api: KubeTarget, kube_unique_name: Callable[..., str]) -> Iterator[str]:
    """A fresh namespace for this test (deleted afterwards; without a controller-manager it stays
    Terminating, which is harmless)."""
    name = kube_unique_name("t")

    async def create(api: Any) -> None:
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: "true"}))
        await client.CoreV1Api(api).create_namespace(body)

    async def delete(api: Any) -> None:
        try:
            await client.CoreV1Api(api).delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise

    kube_api.run(create)
    yield name
    if not os.environ.get(ENV_KEEP_NAMESPACES):
        kube_api.run(delete)
