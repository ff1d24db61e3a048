package sealgate.rules.scans_test

import rego.v1

import data.sealgate.rules.scans

image := {"registry": "docker.io", "repository": "library/app", "reference": "app:1"}

scan(age, source) := {"age_seconds": age, "source": source, "vulnerabilities": []}

test_no_scan_warns_by_default if {
	vs := scans.violations with input as {"image": image, "scan": null} with data.parameters as {}
	count(vs) == 0
	ws := scans.warnings with input as {"image": image, "scan": null} with data.parameters as {}
	{w.code | some w in ws} == {"scan.missing"}
}

test_no_scan_is_denied_when_required if {
	vs := scans.violations with input as {"image": image}
		with data.parameters as {"defaults": {"scans": {"required": true}}}
	{v.code | some v in vs} == {"scan.missing"}
}

test_stale_scan_is_denied if {
	vs := scans.violations with input as {"image": image, "scan": scan(120, "authenticated_upload")}
		with data.parameters as {"defaults": {"scans": {"max_age_seconds": 60}}}
	{v.code | some v in vs} == {"scan.stale"}
}

test_stale_scan_says_its_age_for_people_and_keeps_the_seconds if {
	vs := scans.violations with input as {"image": image, "scan": scan(137701515, "authenticated_upload")}
		with data.parameters as {"defaults": {"scans": {"max_age_seconds": 604800}}}
	some v in vs
	v.message == "the newest scan of app:1 is 4 years 133 days old; at most 7 days allowed"
	v.age_seconds == 137701515
	v.max_age_seconds == 604800
}

test_fresh_scan_passes if {
	vs := scans.violations with input as {"image": image, "scan": scan(60, "authenticated_upload")}
		with data.parameters as {"defaults": {"scans": {"max_age_seconds": 60}}}
	count(vs) == 0
}

test_unsigned_referrer_scan_warns if {
	ws := scans.warnings with input as {"image": image, "scan": scan(1, "unsigned_referrer")}
		with data.parameters as {}
	{w.code | some w in ws} == {"scan.unverified"}
}

summary_scan := {"age_seconds": 1, "source": "registry_webhook", "summary_only": true, "counts": {}, "vulnerabilities": []}

test_registry_summary_warns_by_default if {
	vs := scans.violations with input as {"image": image, "scan": summary_scan} with data.parameters as {}
	count(vs) == 0
	ws := scans.warnings with input as {"image": image, "scan": summary_scan} with data.parameters as {}
	{w.code | some w in ws} == {"scan.summary_only"}
}

test_registry_summary_is_denied_when_findings_are_required if {
	vs := scans.violations with input as {"image": image, "scan": summary_scan}
		with data.parameters as {"defaults": {"scans": {"required": true, "require_findings": true}}}
	{v.code | some v in vs} == {"scan.summary_only"}
}

test_full_registry_report_is_not_flagged if {
	full := {"age_seconds": 1, "source": "registry_webhook", "vulnerabilities": []}
	ws := scans.warnings with input as {"image": image, "scan": full} with data.parameters as {}
	count(ws) == 0
}
