"""HTTP edge: parse, authorize, call the domain, shape the answer."""
