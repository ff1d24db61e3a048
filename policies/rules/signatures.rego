# Signatures: the image needs a verified signature from an authority that may vouch
# for it. By default that is any authority whose scope matches the image (the input
# lists them); data can instead name required authorities and how many of them must
# have signed (any-of with min_authorities 1, N-of-M with min_authorities N).
package sealgate.rules.signatures

import rego.v1

import data.sealgate.lib.params

settings := object.get(params.effective, "signatures", {})

required if object.get(settings, "required", true) != false

required_authorities := {name | some name in object.get(settings, "authorities", [])}

min_authorities := object.get(settings, "min_authorities", 1)

signed_by := {s.authority | some s in input.signatures}

# Authorities in scope for this image that produced a verified signature on it.
in_scope_signers := signed_by & {a | some a in input.authorities}

violations contains v if {
	required
	count(required_authorities) == 0
	count(input.authorities) == 0
	v := {
		"code": "signature.no_authority",
		"message": sprintf("no configured authority's scope matches %s, so no signature on it can be trusted", [params.image_name]),
		"fix": sprintf("add an authority whose scope covers %s, or exempt the image in data.parameters.exemptions", [params.image_name]),
	}
}

violations contains v if {
	required
	count(required_authorities) == 0
	count(input.authorities) > 0
	count(in_scope_signers) == 0
	v := {
		"code": "signature.missing",
		"message": sprintf("%s has no verified signature from an authority in scope (%s)", [input.image.reference, concat(", ", sort(input.authorities))]),
		"fix": sprintf("sign the image by digest with a key or identity of: %s", [concat(", ", sort(input.authorities))]),
	}
}

violations contains v if {
	required
	count(required_authorities) > 0
	have := signed_by & required_authorities
	count(have) < min_authorities
	missing := required_authorities - have
	v := {
		"code": "signature.required_authorities",
		"message": sprintf("%s has verified signatures from %d of the required authorities, %d needed (required: %s)", [input.image.reference, count(have), min_authorities, concat(", ", sort(required_authorities))]),
		"fix": sprintf("sign the image with %d more of: %s", [min_authorities - count(have), concat(", ", sort(missing))]),
	}
}
