"""docs/configuration.md is generated from the settings; it must list every variable the service reads."""

from __future__ import annotations

from pathlib import Path

from sandboxd.settings import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_reference_is_current() -> None:
    assert DOC.read_text() == reference.render(), (
        "docs/configuration.md is stale: run `python -m sandboxd.settings.reference > docs/configuration.md`"
    )


def test_every_group_field_names_its_variable_and_says_what_it_does() -> None:
    for _, group in reference.GROUPS:
        for name, field in group.model_fields.items():
            assert field.validation_alias, f"{group.__name__}.{name} reads no environment variable"
            assert field.description, f"{group.__name__}.{name} has no description"
