"""Rego policies: the input contract, the engines that evaluate them, bundles and tests."""
