"""Which cluster, as whom: the client configuration from ``KUBECONFIG`` (and a context) or the pod's service account.

- ``KUBECONFIG`` set: that file, its ``SANDBOXD_KUBE_CONTEXT`` context or its current one (never rewritten:
  ``persist_config=False``);
- unset, inside a pod (``KUBERNETES_SERVICE_HOST``): the mounted service-account token and CA, the token
  re-read as the kubelet rotates it;
- neither: a ``ConfigurationError`` naming both variables, at start-up, not on the first apply.

``api_client`` makes one ``ApiClient`` (one aiohttp session and connection pool) per use: the applier's
requests and the watches get one each, so a dozen long-lived watch connections never queue an apply. Its session
does not consult the environment on every request (kubernetes_asyncio's ``trust_env``: two hops to a worker
thread per request, to look up proxy variables and parse ``~/.netrc``, about a third of the client's CPU per
apply) unless ``HTTPS_PROXY``/``HTTP_PROXY`` name a proxy for the API server (``NO_PROXY`` respected): that is
decided once, here. ``~/.netrc`` is never read for the API server then, as kubectl never reads it.

What it deliberately does not do: connect (the first request does), or fall back to ``~/.kube/config``
silently (a reconciler pointed at the wrong cluster is worse than one that refuses to start).
"""

from __future__ import annotations

import copy
import os
import urllib.parse
import urllib.request
from typing import Any, Final

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration

from sandboxd.errors import ConfigurationError
from sandboxd.settings.service import ApplierSettings

IN_CLUSTER_ENV: Final = "KUBERNETES_SERVICE_HOST"


async def load_configuration(settings: ApplierSettings) -> Configuration:
    """The client configuration ``settings`` name; ``ConfigurationError`` when there is none or it is invalid."""
    configuration = Configuration()
    if settings.kubeconfig:
        try:
            await kube_config.load_kube_config(
                config_file=settings.kubeconfig,
                context=settings.kube_context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (kube_config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            where = f"KUBECONFIG={settings.kubeconfig}"
            if settings.kube_context:
                where += f" (SANDBOXD_KUBE_CONTEXT={settings.kube_context})"
            raise ConfigurationError(f"{where}: cannot load the kubeconfig: {exc}") from exc
        return configuration
    if os.environ.get(IN_CLUSTER_ENV):
        load_incluster: Any = kube_config.load_incluster_config  # untyped in kubernetes_asyncio
        try:
            load_incluster(client_configuration=configuration)
        except (kube_config.ConfigException, OSError) as exc:
            raise ConfigurationError(f"KUBECONFIG is unset and the in-cluster configuration failed: {exc}") from exc
        return configuration
    raise ConfigurationError(
        "a Kubernetes client (SANDBOXD_APPLIER=kubernetes, and `sandboxd scaler` whatever the applier) needs "
        f"KUBECONFIG (a kubeconfig path) or to run in a pod ({IN_CLUSTER_ENV})"
    )


def api_client(configuration: Configuration, *, connections: int) -> ApiClient:
    """A new ``ApiClient`` on its own connection pool of at most ``connections``; the caller closes it."""
    own = copy.deepcopy(configuration)
    own.connection_pool_maxsize = connections
    client = ApiClient(configuration=own)
    client.user_agent = "sandboxd"
    if not _proxied(str(own.host or "")):
        _ignore_environment(client)
    return client


def _proxied(host: str) -> bool:
    """Whether the environment's proxy variables send requests to ``host`` (a URL) through a proxy."""
    url = urllib.parse.urlsplit(host)
    return bool(urllib.request.getproxies().get(url.scheme)) and not urllib.request.proxy_bypass(url.hostname or "")


def _ignore_environment(client: ApiClient) -> None:
    """The client's session, on the same connection pool, without ``trust_env``."""
    rest: Any = client.rest_client
    library = rest.pool_manager
    connector = library.connector
    library.detach()  # closed without closing the pool it hands over
    # The library's read buffer: a watch event of a large object exceeds aiohttp's default.
    rest.pool_manager = aiohttp.ClientSession(connector=connector, trust_env=False, read_bufsize=2**21)
