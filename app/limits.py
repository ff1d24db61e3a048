"""Size limits: how much Sealgate reads, parses or keeps of anything it is handed.

Every cap on untrusted input (an HTTP body, a registry response, a signature, a scan
report, a policy bundle) is declared here once, so that two modules reading the same thing
cannot disagree on its limit. Settings an operator may change (``SEALGATE_MAX_MANIFEST_BYTES``
and the others in ``app.config``) take their defaults from here. Limits that are part of a
protocol (Kubernetes' warning truncation in ``app.k8s.response``, the distribution spec's
name length in ``app.oci.refs``) and limits on what is shown rather than read stay with
their modules.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB

# -- HTTP ---------------------------------------------------------------------------------------
MAX_BODY_BYTES = 16 * MiB  # any request body the API reads
MAX_REVIEW_BYTES = 3 * MiB  # an AdmissionReview (the API server sends at most 3 MiB)
MAX_EVENTS_PER_ENVELOPE = 1000  # events read from one registry webhook delivery

# -- registries ---------------------------------------------------------------------------------
MAX_MANIFEST_BYTES = 4 * MiB  # default of SEALGATE_MAX_MANIFEST_BYTES: one manifest or index
MAX_BLOB_BYTES = 64 * MiB  # default of SEALGATE_MAX_BLOB_BYTES: one blob read into memory
MAX_ERROR_BODY_BYTES = 64 * KiB  # a registry's error answer (or any answer we only skim)
MAX_TOKEN_RESPONSE_BYTES = 1 * MiB  # a registry token service's answer
MAX_REFERRERS = 128  # default of SEALGATE_MAX_REFERRERS: referrers listed for one image
MAX_REFERRER_PAGES = 16  # default of SEALGATE_MAX_REFERRER_PAGES: pages of one referrers list
MAX_INDEX_BYTES = 16 * MiB  # an OCI image layout's index.json (sealgate transfer)

# -- signatures and trust -----------------------------------------------------------------------
MAX_BUNDLE_BYTES = 1 * MiB  # one Sigstore bundle
MAX_PAYLOAD_BYTES = 1 * MiB  # one signed payload (simple-signing layer, DSSE statement)
MAX_SIGNATURES = 32  # signature candidates read for one image
MAX_TRUSTED_ROOT_BYTES = 1 * MiB  # one Sigstore trusted root JSON
MAX_PEM_BYTES = 64 * KiB  # one PEM key file or text (private key import, --key)
MAX_KEYS_PER_AUTHORITY = 32  # public keys one authority holds
MAX_PATTERN_CHARS = 1024  # one identity regular expression
MAX_REMAPS = 32  # signed-identity remap rules of one authority
MAX_ANNOTATIONS = 32  # annotations a caller may add to one signature
MAX_INDEX_CHILDREN = 64  # manifests of an index that `sign --recursive` signs

# -- scans --------------------------------------------------------------------------------------
MAX_REPORT_BYTES = 32 * MiB  # one vulnerability report
MAX_SCAN_FINDINGS = 10_000  # default of SEALGATE_MAX_SCAN_FINDINGS: findings of one report
MAX_SCAN_REFERRERS = 8  # scan-report referrers read for one image
MAX_INDEX_PLATFORMS = 32  # platforms of an index whose configs a report's image id is checked on

# -- policy -------------------------------------------------------------------------------------
MAX_POLICY_BUNDLE_BYTES = 4 * MiB  # one policy bundle, all files together
MAX_POLICY_BUNDLE_FILES = 500  # files in one policy bundle
POLICY_COMPILE_MEMORY_BYTES = 1024 * MiB  # default of SEALGATE_POLICY_COMPILE_MEMORY

# -- records and caches -------------------------------------------------------------------------
MAX_AUDIT_DETAILS_BYTES = 16 * KiB  # the JSON details of one audit record
MAX_DECISION_CACHE_BYTES = 64 * MiB  # default of SEALGATE_CACHE_DECISION_MAX_BYTES
MAX_CLI_FILE_BYTES = 1 * MiB  # a file `sealgate k8s` reads (--kek-file, --ca-bundle)
