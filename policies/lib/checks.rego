# The rule sets each entry point applies. Signing a new image cannot require that it
# is already signed, so "sign" leaves the signature rules out.
package sealgate.lib.checks

import rego.v1

import data.sealgate.rules.images
import data.sealgate.rules.scans
import data.sealgate.rules.signatures
import data.sealgate.rules.vulnerabilities

content_violations := (images.violations | scans.violations) | vulnerabilities.violations

all_violations := content_violations | signatures.violations

all_warnings := scans.warnings | vulnerabilities.warnings

# The earliest moment a rule's answer for this input changes with time alone (a scan
# growing too old, an allowlist entry expiring): returned as "valid_until_ns" so that a
# cached decision is never served past it.
validity_limits := scans.limits | vulnerabilities.limits

validity := {"valid_until_ns": min(validity_limits)} if {
	count(validity_limits) > 0
} else := {}
