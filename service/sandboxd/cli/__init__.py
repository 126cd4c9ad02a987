"""The command line: ``sandboxd`` (run, init, dev) and ``sandboxctl`` (publish events, read the projection).

The top layer and deliberately thin: parse arguments, build settings and the service from ``sandboxd.app``,
print. Modules:

- ``sandboxd``: the service commands; ``dev`` (one machine, no cluster) lives in ``dev``.
- ``sandboxctl``: the client's argument parser and dispatch; ``events`` builds events from flags or a file,
  ``projection`` reads the status bucket, ``deadletters`` reads and replays the dead-letter stream, ``output``
  draws tables, JSON and YAML.
- ``connection``: the NATS flags every command shares; ``signals``: SIGTERM/SIGINT handling; ``exits``: every
  failure ends as one line on stderr and exit code 1 (argparse uses 2 for usage errors).
"""
