"""Prefect flows: the weekly lineage run and reproduction. Stage code lives in tasks/."""
