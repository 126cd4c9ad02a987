"""The Kubernetes applier: server-side apply to a cluster, prune, retained and purging delete, readiness watches.

``applier`` holds what an apply, a prune and a delete do; ``watching`` the list-then-watch feeds that kick a
sandbox when its session pods' readiness changes or one of its objects is deleted; ``transport`` the REST
calls (apply, get, list, delete, watch) on a kubernetes_asyncio ``ApiClient``; ``errors`` the one place client
failures become ``sandboxd.errors``; ``resources`` the REST path of every kind the renderer emits and the label
selectors; ``client`` where the cluster and credentials come from (``KUBECONFIG`` or the pod's service account).
"""

from sandboxd.adapters.kubernetes.applier import KubernetesApplier
from sandboxd.adapters.kubernetes.watching import WatchTiming

__all__ = ["KubernetesApplier", "WatchTiming"]
