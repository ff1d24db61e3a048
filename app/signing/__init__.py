"""Signing: payloads, keys held by Sealgate, key and Sigstore signers, publishing."""
