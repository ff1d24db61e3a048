"""Verification: collect signature evidence for an image, verify it against configured trust.

``evidence`` gathers candidates (never trusted); ``bundle`` and ``legacy`` verify them, with
keys (``trusted_keys``) or keylessly (``keyless`` for bundles through sigstore-python,
``keyless_legacy`` and ``transparency`` for cosign ``.sig`` layers, both against a
``trusted_root`` and a ``keyless_identity``); ``binding`` ties a verified payload to the
image digest and ``identity`` to its repository; ``trust`` stores the authorities, and
``model`` holds the verified facts handed to policy.
"""
