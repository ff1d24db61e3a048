"""Who may do what: API tokens (stored hashed) and the image scopes they carry."""
