"""The reliability suite: ``make test-chaos`` (marker ``chaos``, left out of ``make test``); docs/reliability.md."""
