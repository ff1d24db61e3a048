# End-to-end checks of the three entry points over the default data.json.
package sealgate.entrypoints_test

import rego.v1

import data.sealgate.admission
import data.sealgate.push
import data.sealgate.sign

image := {
	"reference": "registry.example.com/team/app:1.0", "registry": "registry.example.com",
	"repository": "team/app", "tag": "1.0", "digest": "sha256:aa", "pinned": false,
}

clean := {
	"version": 1, "evaluated_at": "2026-06-01T00:00:00Z", "image": image,
	"authorities": ["ci"],
	"signatures": [{"authority": "ci", "kind": "key", "format": "sigstore-bundle"}],
	"scan": {"age_seconds": 10, "source": "authenticated_upload", "vulnerabilities": []},
}

test_clean_image_is_admitted if {
	d := admission.decision with input as object.union(clean, {"entrypoint": "admission"})
	d.allow == true
	count(d.deny) == 0
}

test_unsigned_image_is_refused_at_push if {
	d := push.decision with input as object.union(clean, {"entrypoint": "push", "signatures": []})
	d.allow == false
	{v.code | some v in d.deny} == {"signature.missing"}
}

test_sign_does_not_require_a_signature if {
	d := sign.decision with input as object.union(clean, {"entrypoint": "sign", "signatures": []})
	d.allow == true
}
