"""The GitOps applier: rendered sandboxes committed under ``sandbox/<owner-uid>/`` of a git repository.

``applier`` holds the read-compare-write-push loop and the error boundary; ``repository`` the git plumbing of
one working clone; ``remote`` where the repository is and how its credentials stay out of sight; ``secret_guard``
the guard that refuses to commit a Secret value.
"""

from sandboxd.adapters.gitops.applier import Backoff, GitOpsApplier

__all__ = ["Backoff", "GitOpsApplier"]
