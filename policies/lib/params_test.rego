package sealgate.lib.params_test

import rego.v1

import data.sealgate.lib.params

image := {"registry": "registry.example.com", "repository": "team/app", "reference": "registry.example.com/team/app:1"}

parameters := {
	"defaults": {"mode": "enforce", "scans": {"required": false, "max_age_seconds": 60}},
	"namespaces": {"dev": {"mode": "warn"}},
	"repositories": {
		"registry.example.com/**": {"scans": {"required": true}},
		"registry.example.com/team/app": {"scans": {"max_age_seconds": 10}},
	},
}

test_defaults_apply_without_overrides if {
	e := params.effective with input as {"image": {"registry": "other.io", "repository": "x"}}
		with data.parameters as parameters
	e.scans == {"required": false, "max_age_seconds": 60}
}

test_most_specific_repository_pattern_wins if {
	e := params.effective with input as {"image": image} with data.parameters as parameters
	e.scans.max_age_seconds == 10
	e.scans.required == false
}

test_wildcard_repository_pattern_applies if {
	e := params.effective with input as {"image": {"registry": "registry.example.com", "repository": "other/x"}}
		with data.parameters as parameters
	e.scans.required == true
}

test_namespace_sets_mode if {
	m := params.mode with input as {"image": image, "kubernetes": {"namespace": "dev"}}
		with data.parameters as parameters
	m == "warn"
}

test_unknown_mode_is_enforce if {
	m := params.mode with input as {"image": image}
		with data.parameters as {"defaults": {"mode": "off"}}
	m == "enforce"
}

test_missing_parameters_are_empty if {
	e := params.effective with input as {"image": image} with data.parameters as {}
	e == {}
}
