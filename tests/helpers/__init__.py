"""Shared test helpers (fixture data writers); no tests here."""
