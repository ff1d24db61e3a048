"""Persistence: the declarative base, the models and database sessions."""
