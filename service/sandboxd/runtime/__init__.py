"""The runtime: the consume loop, the keyed work queue, retries and the one place that settles deliveries.

Knows nothing of NATS (deliveries and dead letters are protocols the JetStream adapter implements) and nothing
of Kubernetes (the reconcile use case talks to an ``Applier``).
"""
