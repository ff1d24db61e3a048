package sealgate.rules.vulnerabilities_test

import rego.v1

import data.sealgate.rules.vulnerabilities

now := "2026-06-01T12:00:00Z"

image := {"registry": "docker.io", "repository": "library/app", "reference": "app:1"}

vuln(id, severity, fixed) := {
	"id": id, "severity": severity, "package": "openssl", "installed": "3.0.1",
	"fixed": fixed, "fix_available": fixed != null, "vex_status": null,
}

scan_input(vulns) := {"evaluated_at": now, "image": image, "scan": {"vulnerabilities": vulns}}

codes(vs) := {v.code | some v in vs}

test_critical_is_denied if {
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as {}
	codes(vs) == {"vulnerability.severity"}
	some v in vs
	contains(v.fix, "no fixed version")
}

test_high_with_fix_is_denied if {
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-2", "high", "3.0.9")])
		with data.parameters as {}
	codes(vs) == {"vulnerability.fixable"}
	some v in vs
	contains(v.fix, "upgrade openssl to 3.0.9")
}

test_high_without_fix_passes if {
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-3", "high", null)])
		with data.parameters as {}
	count(vs) == 0
}

test_medium_passes if {
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-4", "medium", "1")])
		with data.parameters as {}
	count(vs) == 0
}

test_finding_without_vex_status_is_denied if {
	v := object.remove(vuln("CVE-1", "critical", null), ["vex_status", "fixed"])
	vs := vulnerabilities.violations with input as scan_input([v]) with data.parameters as {}
	codes(vs) == {"vulnerability.severity"}
}

test_vex_not_affected_suppresses if {
	v := object.union(vuln("CVE-5", "critical", null), {"vex_status": "not_affected"})
	vs := vulnerabilities.violations with input as scan_input([v]) with data.parameters as {}
	count(vs) == 0
}

test_vex_in_triage_does_not_suppress if {
	v := object.union(vuln("CVE-5", "critical", null), {"vex_status": "in_triage"})
	vs := vulnerabilities.violations with input as scan_input([v]) with data.parameters as {}
	count(vs) == 1
}

# Fails if "affected" is added to vex_suppressing in vulnerabilities.rego: a VEX
# statement that the image IS affected (CycloneDX "exploitable") must never suppress.
test_vex_affected_does_not_suppress if {
	v := object.union(vuln("CVE-5", "critical", null), {"vex_status": "affected"})
	vs := vulnerabilities.violations with input as scan_input([v]) with data.parameters as {}
	codes(vs) == {"vulnerability.severity"}
}

# Fails if the fixable-severity rule in vulnerabilities.rego stops checking vex_status:
# a high finding with a fix that VEX says does not affect the image is allowed.
test_vex_not_affected_suppresses_the_fixable_rule if {
	v := object.union(vuln("CVE-6", "high", "3.0.9"), {"vex_status": "not_affected"})
	vs := vulnerabilities.violations with input as scan_input([v]) with data.parameters as {}
	count(vs) == 0
}

allow(entry) := {"defaults": {"vulnerabilities": {"allowlist": [entry]}}}

test_allowlist_entry_before_expiry_allows if {
	entry := {"id": "CVE-1", "expires": "2026-06-01", "reason": "not reachable"}
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	count(vs) == 0
}

test_expired_allowlist_entry_stops_allowing if {
	entry := {"id": "CVE-1", "expires": "2026-05-31", "reason": "not reachable"}
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	codes(vs) == {"vulnerability.severity"}
	ws := vulnerabilities.warnings with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	{w.code | some w in ws} == {"vulnerability.allowlist_inactive"}
}

test_allowlist_entry_with_timestamp_expiry if {
	entry := {"id": "CVE-1", "expires": "2026-06-01T11:59:59Z", "reason": "r"}
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	count(vs) == 1
}

test_allowlist_entry_without_reason_allows_nothing if {
	entry := {"id": "CVE-1", "expires": "2099-01-01"}
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	count(vs) == 1
}

# Fails if the `entry.reason != ""` condition of usable_entry in vulnerabilities.rego is
# dropped: an empty reason is no reason, so the entry allows nothing and says so.
test_allowlist_entry_with_empty_reason_allows_nothing_and_warns if {
	entry := {"id": "CVE-1", "expires": "2099-01-01", "reason": ""}
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	codes(vs) == {"vulnerability.severity"}
	ws := vulnerabilities.warnings with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	{w.code | some w in ws} == {"vulnerability.allowlist_inactive"}
}

test_allowlist_entry_with_bad_expiry_allows_nothing if {
	entry := {"id": "CVE-1", "expires": "soon", "reason": "r"}
	vs := vulnerabilities.violations with input as scan_input([vuln("CVE-1", "critical", null)])
		with data.parameters as allow(entry)
	count(vs) == 1
}

test_no_scan_has_no_vulnerability_violations if {
	vs := vulnerabilities.violations with input as {"evaluated_at": now, "image": image, "scan": null}
		with data.parameters as {}
	count(vs) == 0
}

summary_input(counts, fixable) := {"evaluated_at": now, "image": image, "scan": {
	"source": "registry_webhook", "summary_only": true, "counts": counts, "fixable": fixable,
	"vulnerabilities": [],
}}

test_summary_with_critical_is_denied if {
	vs := vulnerabilities.violations with input as summary_input({"critical": 1}, 0)
		with data.parameters as {}
	codes(vs) == {"vulnerability.severity"}
}

test_summary_critical_cannot_be_allowlisted if {
	vs := vulnerabilities.violations with input as summary_input({"critical": 1}, 0)
		with data.parameters as {"defaults": {"vulnerabilities": {"allowlist": [{"id": "CVE-1", "reason": "r", "expires": "2099-01-01"}]}}}
	codes(vs) == {"vulnerability.severity"}
}

test_summary_high_denied_when_some_are_fixable if {
	vs := vulnerabilities.violations with input as summary_input({"high": 4, "unknown": 1}, 5)
		with data.parameters as {}
	codes(vs) == {"vulnerability.fixable"}
}

test_summary_high_passes_when_none_is_fixable if {
	vs := vulnerabilities.violations with input as summary_input({"high": 4}, 0)
		with data.parameters as {}
	count(vs) == 0
}

test_clean_summary_passes if {
	vs := vulnerabilities.violations with input as summary_input({}, 0) with data.parameters as {}
	count(vs) == 0
}
