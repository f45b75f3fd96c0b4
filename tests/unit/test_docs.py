"""The README stays in step with the code: commands first, every catalogue topic listed."""

from pathlib import Path

from shared.contracts.topics import AGENCY_FAMILIES, CATALOGUE

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_readme_topic_table_covers_the_catalogue() -> None:
    for spec in CATALOGUE:
        assert f"`{spec.name}`" in README, spec.name
    for family in AGENCY_FAMILIES:
        assert f"`{family.template.name}`" in README, family.template.name


def test_every_documented_example_is_valid() -> None:
    from shared.contracts import events as ev

    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    models = {
        "agency-provider.json": ev.AgencyRecord,
        "agency-referrer.json": ev.AgencyRecord,
        "listing.json": ev.ServiceListing,
        "submission.json": ev.CaseSubmission,
    }
    assert sorted(p.name for p in examples.glob("*.json")) == sorted(models)
    for name, model in models.items():
        model.model_validate_json((examples / name).read_text())
