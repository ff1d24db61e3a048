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
