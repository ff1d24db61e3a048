package sealgate.rules.images_test

import rego.v1

import data.sealgate.rules.images

img(registry, tag, pinned) := {
	"registry": registry, "repository": "team/app", "reference": "ref",
	"tag": tag, "pinned": pinned,
}

codes(vs) := {v.code | some v in vs}

test_latest_tag_is_denied if {
	vs := images.violations with input as {"image": img("r.io", "latest", false)} with data.parameters as {}
	codes(vs) == {"image.latest"}
}

test_missing_tag_implies_latest if {
	vs := images.violations with input as {"image": img("r.io", null, false)} with data.parameters as {}
	codes(vs) == {"image.latest"}
}

test_version_tag_passes if {
	vs := images.violations with input as {"image": img("r.io", "1.2", false)} with data.parameters as {}
	count(vs) == 0
}

test_pinned_latest_passes if {
	vs := images.violations with input as {"image": img("r.io", "latest", true)} with data.parameters as {}
	count(vs) == 0
}

test_latest_allowed_when_asked if {
	vs := images.violations with input as {"image": img("r.io", "latest", false)}
		with data.parameters as {"defaults": {"tags": {"deny_latest": false}}}
	count(vs) == 0
}

test_require_digest if {
	p := {"defaults": {"tags": {"require_digest": true}}}
	vs := images.violations with input as {"image": img("r.io", "1.2", false)} with data.parameters as p
	codes(vs) == {"image.not_pinned"}
	ok := images.violations with input as {"image": img("r.io", "1.2", true)} with data.parameters as p
	count(ok) == 0
}

test_registry_not_allowed if {
	p := {"defaults": {"registries": {"allowed": ["registry.example.com", "*.corp.example"]}}}
	vs := images.violations with input as {"image": img("docker.io", "1", false)} with data.parameters as p
	codes(vs) == {"registry.not_allowed"}
	ok := images.violations with input as {"image": img("eu.corp.example", "1", false)} with data.parameters as p
	count(ok) == 0
}
