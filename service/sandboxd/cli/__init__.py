"""The command line: ``sandboxd`` (run, init, scaler, dev) and ``sandboxctl`` (publish events, read the projection).

The top layer and deliberately thin: parse arguments, build settings and the service from ``sandboxd.app``,
print. Modules:

- ``sandboxd``: the process commands; ``dev`` (one machine, no cluster) lives in ``dev``; ``serving`` runs a
  long-lived process until SIGTERM/SIGINT and ``signals`` handles those signals.
- ``sandboxctl``: the argument parser and dispatch; ``actions`` does each command on a ``sandboxd.client``
  (which publishes events and reads the status bucket), ``events`` reads a spec from flags or a file,
  ``deadletters`` reads and replays the dead-letter stream, ``output`` draws tables, JSON and YAML.
- ``connection``: the NATS flags every command shares and the bounded connect; ``exits``: every failure ends as
  one line on stderr and exit code 1 (argparse uses 2 for usage errors).
"""
