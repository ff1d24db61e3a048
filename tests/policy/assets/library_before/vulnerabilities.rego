# Vulnerabilities: deny findings of the denied severities (critical by default) and of
# the fixable severities when a fix exists (high by default), unless a VEX statement
# says the image is not affected or an allowlist entry covers the finding. Allowlist
# entries need an id, a reason and an expiry ("YYYY-MM-DD" means the end of that day,
# UTC, or an RFC 3339 time); an entry past its expiry, or missing either, allows nothing.
package sealgate.rules.vulnerabilities

import rego.v1

import data.sealgate.lib.params

settings := object.get(params.effective, "vulnerabilities", {})

deny_severities := {s | some s in object.get(settings, "deny_severities", ["critical"])}

fixable_severities := {s | some s in object.get(settings, "deny_fixable_severities", ["high"])}

# VEX states under which a finding does not apply to the image.
vex_suppressing := {"not_affected", "resolved", "false_positive"}

# Rules walk input.scan.vulnerabilities with the cheapest test first (severity) and the
# VEX check inline: with hundreds of findings, building a set of finding objects or
# calling a function per finding costs more than the rest of the decision.

# Checked before parsing: the engine treats a builtin error as an evaluation error,
# and a typo in one entry must not stop every decision.
expiry_ns(expires) := time.parse_rfc3339_ns(sprintf("%sT23:59:59Z", [expires])) if {
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`, expires)
}

expiry_ns(expires) := time.parse_rfc3339_ns(expires) if {
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`, expires)
}

usable_entry(entry) if {
	is_string(entry.id)
	is_string(entry.reason)
	entry.reason != ""
	is_string(entry.expires)
}

active_allowlist contains entry if {
	some entry in object.get(settings, "allowlist", [])
	usable_entry(entry)
	expiry_ns(entry.expires) > params.now_ns
}

# When this decision stops holding: the next expiry of an entry that allows something now.
limits contains expiry_ns(entry.expires) if {
	some entry in active_allowlist
}

allowlisted(id) if {
	some entry in active_allowlist
	entry.id == id
}

describe(vuln) := sprintf("%s (%s) in %s %s", [vuln.id, vuln.severity, vuln.package, object.get(vuln, "installed", "")])

fix_text(vuln) := sprintf("upgrade %s to %s or later and rescan, or add %s to the allowlist with a reason and an expiry", [vuln.package, vuln.fixed, vuln.id]) if {
	is_string(vuln.fixed)
	vuln.fixed != ""
}

else := sprintf("no fixed version is known: replace %s, or add %s to the allowlist with a reason and an expiry", [vuln.package, vuln.id])

violations contains v if {
	some vuln in input.scan.vulnerabilities
	vuln.severity in deny_severities
	not object.get(vuln, "vex_status", "") in vex_suppressing
	not allowlisted(vuln.id)
	v := {
		"code": "vulnerability.severity",
		"message": sprintf("%s has a %s vulnerability: %s", [input.image.reference, vuln.severity, describe(vuln)]),
		"fix": fix_text(vuln),
		"vulnerability": vuln.id,
	}
}

violations contains v if {
	some vuln in input.scan.vulnerabilities
	vuln.severity in fixable_severities
	vuln.fix_available == true
	not vuln.severity in deny_severities
	not object.get(vuln, "vex_status", "") in vex_suppressing
	not allowlisted(vuln.id)
	v := {
		"code": "vulnerability.fixable",
		"message": sprintf("%s has a %s vulnerability with a fix available: %s", [input.image.reference, vuln.severity, describe(vuln)]),
		"fix": fix_text(vuln),
		"vulnerability": vuln.id,
	}
}

# Tell the author when an allowlist entry stopped allowing a finding that is present.
warnings contains w if {
	some entry in object.get(settings, "allowlist", [])
	some vuln in input.scan.vulnerabilities
	vuln.id == entry.id
	not object.get(vuln, "vex_status", "") in vex_suppressing
	not allowlisted(vuln.id)
	w := {
		"code": "vulnerability.allowlist_inactive",
		"message": sprintf("allowlist entry for %s does not apply: it has expired or lacks a reason or a valid expiry (expires: %v)", [entry.id, object.get(entry, "expires", null)]),
		"fix": "fix the finding, or renew the entry with a new expiry and a reason",
	}
}
