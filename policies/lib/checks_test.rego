package sealgate.lib.checks_test

import rego.v1

import data.sealgate.lib.checks

unsigned := {
	"evaluated_at": "2026-06-01T00:00:00Z",
	"image": {"reference": "r.io/a/b:latest", "registry": "r.io", "repository": "a/b", "tag": "latest", "pinned": false},
	"authorities": ["ci"],
	"signatures": [],
}

codes(vs) := {v.code | some v in vs}

test_content_checks_leave_signatures_out if {
	vs := checks.content_violations with input as unsigned with data.parameters as {}
	codes(vs) == {"image.latest"}
}

test_all_checks_include_signatures if {
	vs := checks.all_violations with input as unsigned with data.parameters as {}
	codes(vs) == {"image.latest", "signature.missing"}
}

test_warnings_gather_every_rule_set if {
	ws := checks.all_warnings with input as unsigned with data.parameters as {}
	codes(ws) == {"scan.missing"}
}
