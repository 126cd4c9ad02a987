"""Wiring: builds the service from settings (adapters into the use case into the runtime) and runs it."""
