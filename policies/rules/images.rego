# Where an image comes from and how it is named: allowed registries (glob patterns on
# the registry host; an empty list allows any), the mutable "latest" tag (written, or
# implied by a reference with neither tag nor digest), and pinning by digest.
package sealgate.rules.images

import rego.v1

import data.sealgate.lib.params

registries := object.get(params.effective, "registries", {})

tags := object.get(params.effective, "tags", {})

allowed_registries := object.get(registries, "allowed", [])

registry_allowed if {
	some pattern in allowed_registries
	glob.match(pattern, null, input.image.registry)
}

violations contains v if {
	count(allowed_registries) > 0
	not registry_allowed
	v := {
		"code": "registry.not_allowed",
		"message": sprintf("%s comes from registry %s, which is not allowed (allowed: %s)", [input.image.reference, input.image.registry, concat(", ", allowed_registries)]),
		"fix": sprintf("push the image to one of %s and deploy it from there", [concat(", ", allowed_registries)]),
	}
}

implies_latest if {
	input.image.tag == "latest"
	not input.image.pinned
}

implies_latest if {
	object.get(input.image, "tag", null) == null
	not input.image.pinned
}

violations contains v if {
	object.get(tags, "deny_latest", true) == true
	implies_latest
	v := {
		"code": "image.latest",
		"message": sprintf("%s uses the mutable tag 'latest' (written or implied)", [input.image.reference]),
		"fix": "refer to the image by a version tag or, better, by digest (name@sha256:...)",
	}
}

violations contains v if {
	object.get(tags, "require_digest", false) == true
	not input.image.pinned
	v := {
		"code": "image.not_pinned",
		"message": sprintf("%s is not pinned by digest", [input.image.reference]),
		"fix": sprintf("refer to the image as %s@<digest>", [params.image_name]),
	}
}
