"""The reconcile use case: read the newest desired state, render, apply, project status. Talks to protocols."""
