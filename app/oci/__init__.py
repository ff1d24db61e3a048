"""The OCI distribution side of Sealgate: image references, media types and the registry client.

Start with ``app.oci.refs.ImageRef.parse`` for references and ``app.oci.client.RegistryClient``
for everything that talks to a registry.
"""
