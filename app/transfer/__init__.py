"""Carrying images with everything attached: registry to registry (``copy``), and into and out
of OCI image layouts for air-gapped sites (``export``, ``site_import``)."""
