package sealgate.lib.outcome_test

import rego.v1

import data.sealgate.lib.outcome

base := {
	"image": {"registry": "registry.example.com", "repository": "team/app", "reference": "registry.example.com/team/app:1"},
	"kubernetes": {"namespace": "prod"},
}

violation := {"code": "image.latest", "message": "m", "fix": "f"}

warning := {"code": "scan.missing", "message": "w", "fix": "f"}

test_deny_wins if {
	d := outcome.decide({violation}, {warning}) with input as base with data.parameters as {}
	d.allow == false
	count(d.deny) == 1
	some v in d.deny
	v.image == "registry.example.com/team/app:1"
	count(d.warn) == 1
}

test_no_violations_allows if {
	d := outcome.decide(set(), {warning}) with input as base with data.parameters as {}
	d.allow == true
	d.mode == "enforce"
}

test_warn_mode_turns_denials_into_warnings if {
	p := {"namespaces": {"prod": {"mode": "warn"}}}
	d := outcome.decide({violation}, set()) with input as base with data.parameters as p
	d.allow == true
	count(d.deny) == 0
	some v in d.warn
	v.code == "image.latest"
	v.mode == "warn"
	count(d.notes) == 1
}

test_audit_mode_records_only if {
	p := {"namespaces": {"prod": {"mode": "audit"}}}
	d := outcome.decide({violation}, set()) with input as base with data.parameters as p
	d.allow == true
	count(d.warn) == 0
	count(d.audit) == 1
	d.mode == "audit"
}

test_namespace_exemption_is_named if {
	p := {"exemptions": [{"name": "system", "reason": "cluster components", "namespaces": ["prod"]}]}
	d := outcome.decide({violation}, set()) with input as base with data.parameters as p
	d.allow == true
	d.exemptions == ["system"]
	some v in d.exempted
	v.exemptions == ["system"]
}

test_image_exemption_limited_to_rules if {
	p := {"exemptions": [{"name": "legacy", "reason": "r", "images": ["registry.example.com/team/*"], "rules": ["vulnerability.*"]}]}
	d := outcome.decide({violation}, set()) with input as base with data.parameters as p
	d.allow == false
	d.exemptions == ["legacy"]
}

test_exemption_for_other_namespace_does_not_apply if {
	p := {"exemptions": [{"name": "system", "reason": "r", "namespaces": ["kube-system"]}]}
	d := outcome.decide({violation}, set()) with input as base with data.parameters as p
	d.allow == false
	d.exemptions == []
}

test_exemption_without_scope_never_applies if {
	p := {"exemptions": [{"name": "everything", "reason": "r"}]}
	d := outcome.decide({violation}, set()) with input as base with data.parameters as p
	d.allow == false
}
