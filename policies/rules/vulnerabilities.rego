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

# Speed matters here: an input can hold hundreds of findings, and the engine's cost is
# per finding and per denial. So the findings are walked once, a finding's severity is
# looked up (not tested against each rule), the rule values the walk needs are read into
# locals before it, the allowlist is a set of ids, and a denial costs two sprintf calls.

# Severity -> the rule a finding of that severity breaks: its code, its message (see
# the argument list below) and for which values of "fix_available == true" it applies.
# A denied severity wins over a fixable one.
severity_rules := object.union(
	{s: {
		"code": "vulnerability.fixable",
		"message": "%[1]s has a %[2]s vulnerability with a fix available: %[3]s (%[2]s) in %[4]s %[5]s",
		"when_fix": {true: true},
	} |
		some s in fixable_severities
	},
	{s: {
		"code": "vulnerability.severity",
		"message": "%[1]s has a %[2]s vulnerability: %[3]s (%[2]s) in %[4]s %[5]s",
		"when_fix": {true: true, false: true},
	} |
		some s in deny_severities
	},
)

# The fix, by whether the finding names a fixed version (a non-empty string): "" and null
# name none, and so does any other value that is not a string.
names_no_fix := {"": false, null: false}

fix_messages := {
	true: "upgrade %[4]s to %[6]s or later and rescan, or add %[3]s to the allowlist with a reason and an expiry",
	false: "no fixed version is known: replace %[4]s, or add %[3]s to the allowlist with a reason and an expiry",
}

violations contains v if {
	input.scan.vulnerabilities != []
	rules := severity_rules
	allowed := allowlisted_ids
	suppressing := vex_suppressing
	fixes := fix_messages
	no_fix := names_no_fix
	reference := input.image.reference
	some vuln in input.scan.vulnerabilities
	# vulnerability.severity when vuln.severity in deny_severities, else
	# vulnerability.fixable when vuln.severity in fixable_severities and a fix exists
	rule := rules[vuln.severity]
	rule.when_fix[object.get(vuln, "fix_available", false) == true]
	vex := object.get(vuln, "vex_status", "")
	not suppressing[vex]
	not allowed[vuln.id]
	fixed := object.get(vuln, "fixed", null)
	# One argument list for both messages: image, severity, id, package, installed, fixed.
	args := [reference, vuln.severity, vuln.id, vuln.package, object.get(vuln, "installed", ""), fixed]
	v := {
		"code": rule.code,
		"message": sprintf(rule.message, args),
		"fix": sprintf(fixes[object.get(no_fix, fixed, is_string(fixed))], args),
		"vulnerability": vuln.id,
	}
}

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

allowlist := object.get(settings, "allowlist", [])

# [id, expiry] of each entry that allows something now.
active_entries := {[entry.id, until] |
	some entry in allowlist
	usable_entry(entry)
	until := expiry_ns(entry.expires)
	until > params.now_ns
}

allowlisted_ids := {id | some [id, _] in active_entries}

# When this decision stops holding: the next expiry of an entry that allows something now.
limits := {until | some [_, until] in active_entries}

# Entries that allow nothing (expired, or lacking a reason or a valid expiry) by id,
# unless another entry for the same id is active.
inactive_entries := {id: entries |
	some entry in allowlist
	id := entry.id
	not allowlisted_ids[id]
	entries := [e | some e in allowlist; e.id == id]
}

# Tell the author when an allowlist entry stopped allowing a finding that is present.
warnings contains w if {
	count(inactive_entries) > 0
	inactive := inactive_entries
	suppressing := vex_suppressing
	some vuln in input.scan.vulnerabilities
	entries := inactive[vuln.id]
	vex := object.get(vuln, "vex_status", "")
	not suppressing[vex]
	some entry in entries
	w := {
		"code": "vulnerability.allowlist_inactive",
		"message": sprintf("allowlist entry for %s does not apply: it has expired or lacks a reason or a valid expiry (expires: %v)", [entry.id, object.get(entry, "expires", null)]),
		"fix": "fix the finding, or renew the entry with a new expiry and a reason",
	}
}

# A registry's scan summary (input.scan.summary_only, source registry_webhook) has counts
# per severity and no findings. It is trusted for the severity gates, closed: any count in a
# denied severity denies, and a count in a fixable severity denies when the summary says some
# findings have a fix (it cannot say which ones). Without finding ids no allowlist entry or
# VEX statement can apply; the full report (SEALGATE_HARBOR_URL and credentials) can.
summary_fix := "fix the findings and rescan, or let Sealgate read the full report (SEALGATE_HARBOR_URL and credentials) so that allowlist entries and VEX statements can apply"

violations contains v if {
	input.scan.summary_only == true
	some severity in deny_severities
	n := object.get(input.scan.counts, severity, 0)
	n > 0
	v := {
		"code": "vulnerability.severity",
		"message": sprintf("%s has %d %s vulnerabilities (registry scan summary)", [input.image.reference, n, severity]),
		"fix": summary_fix,
	}
}

violations contains v if {
	input.scan.summary_only == true
	object.get(input.scan, "fixable", 0) > 0
	some severity in fixable_severities
	not severity in deny_severities
	n := object.get(input.scan.counts, severity, 0)
	n > 0
	v := {
		"code": "vulnerability.fixable",
		"message": sprintf("%s has %d %s vulnerabilities and the registry's summary says %d findings have a fix", [input.image.reference, n, severity, input.scan.fixable]),
		"fix": summary_fix,
	}
}
