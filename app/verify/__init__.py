"""Verification: collect signature evidence for an image, verify it against configured trust.

``evidence`` gathers candidates (never trusted), ``bundle``/``legacy``/``keyless`` verify them,
``trust`` stores the authorities, and ``model`` holds the verified facts handed to policy.
"""
