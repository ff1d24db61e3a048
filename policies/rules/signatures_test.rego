package sealgate.rules.signatures_test

import rego.v1

import data.sealgate.rules.signatures

image := {"registry": "registry.example.com", "repository": "team/app", "reference": "registry.example.com/team/app:1"}

sig(authority) := {"authority": authority, "kind": "key", "format": "sigstore-bundle"}

codes(vs) := {v.code | some v in vs}

test_signed_by_authority_in_scope_passes if {
	vs := signatures.violations with input as {"image": image, "authorities": ["ci"], "signatures": [sig("ci")]}
		with data.parameters as {}
	count(vs) == 0
}

test_unsigned_image_is_denied if {
	vs := signatures.violations with input as {"image": image, "authorities": ["ci"], "signatures": []}
		with data.parameters as {}
	codes(vs) == {"signature.missing"}
}

test_signature_from_authority_out_of_scope_is_denied if {
	vs := signatures.violations with input as {"image": image, "authorities": ["ci"], "signatures": [sig("other")]}
		with data.parameters as {}
	codes(vs) == {"signature.missing"}
}

test_no_matching_authority_is_a_denial_that_says_so if {
	vs := signatures.violations with input as {"image": image, "authorities": [], "signatures": [sig("ci")]}
		with data.parameters as {}
	codes(vs) == {"signature.no_authority"}
	some v in vs
	contains(v.message, "no configured authority")
}

test_required_any_of if {
	params := {"defaults": {"signatures": {"authorities": ["a", "b"], "min_authorities": 1}}}
	ok := signatures.violations with input as {"image": image, "authorities": [], "signatures": [sig("b")]}
		with data.parameters as params
	count(ok) == 0
	bad := signatures.violations with input as {"image": image, "authorities": ["c"], "signatures": [sig("c")]}
		with data.parameters as params
	codes(bad) == {"signature.required_authorities"}
}

test_required_n_of_m if {
	params := {"defaults": {"signatures": {"authorities": ["a", "b", "c"], "min_authorities": 2}}}
	one := signatures.violations with input as {"image": image, "authorities": [], "signatures": [sig("a")]}
		with data.parameters as params
	codes(one) == {"signature.required_authorities"}
	some v in one
	contains(v.fix, "1 more of: b, c")
	two := signatures.violations with input as {"image": image, "authorities": [], "signatures": [sig("a"), sig("c")]}
		with data.parameters as params
	count(two) == 0
}

test_signatures_not_required if {
	vs := signatures.violations with input as {"image": image, "authorities": [], "signatures": []}
		with data.parameters as {"defaults": {"signatures": {"required": false}}}
	count(vs) == 0
}
