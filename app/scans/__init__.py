"""Vulnerability reports: parsers for Trivy, Grype, SARIF and CycloneDX, and their ingestion."""
