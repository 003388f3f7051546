"""Page-test fixtures shared by tests/studio: a seeded studio database per test."""

from tests.studio.web_fixtures import seeded, seeded_template

__all__ = ["seeded", "seeded_template"]
