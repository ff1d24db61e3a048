# Turns the rules' violations and warnings into the decision every entry point returns:
#
#   {"allow", "deny": [...], "warn": [...], "audit": [...], "mode", "exemptions": [...],
#    "exempted": [...], "notes": [...]}
#
# Each item names its rule (code), the image and a fix. Deny wins: allow is true only
# when deny is empty. Exemptions (data.parameters.exemptions: name, reason, namespaces,
# images as "registry/repository" globs, optional rules as code globs) remove matching
# violations and are named in the decision. The namespace's mode decides what the
# remaining violations become: enforce -> deny, warn -> warn, audit -> audit.
package sealgate.lib.outcome

import rego.v1

import data.sealgate.lib.params

default exemption_list := []

exemption_list := data.parameters.exemptions

namespace_matches(exemption) if count(object.get(exemption, "namespaces", [])) == 0

namespace_matches(exemption) if params.namespace in exemption.namespaces

image_matches(exemption) if count(object.get(exemption, "images", [])) == 0

image_matches(exemption) if {
	some pattern in exemption.images
	glob.match(pattern, ["/"], params.image_name)
}

# An exemption must say where it applies: one with neither list never matches.
applies(exemption) if {
	count(object.get(exemption, "namespaces", [])) + count(object.get(exemption, "images", [])) > 0
	namespace_matches(exemption)
	image_matches(exemption)
}

active_exemptions contains exemption if {
	some exemption in exemption_list
	applies(exemption)
}

active_names := sort({e.name | some e in active_exemptions})

covers(exemption, code) if count(object.get(exemption, "rules", [])) == 0

covers(exemption, code) if {
	some pattern in exemption.rules
	glob.match(pattern, ["."], code)
}

# Rule code -> the sorted names of the active exemptions covering it, for the codes
# among ``violations`` that some exemption covers. Matched once per code, not once per
# violation; with no active exemption nothing is matched at all.
exempting(violations) := {} if {
	count(active_exemptions) == 0
} else := {code: names |
	some code in {v.code | some v in violations}
	names := sort({e.name | some e in active_exemptions; covers(e, code)})
	count(names) > 0
}

# Where the violations left after exemptions go in each mode, and what they are stamped
# with besides the image.
placement := {
	"enforce": {"slot": "deny", "stamp": {}},
	"warn": {"slot": "warn", "stamp": {"mode": "warn"}},
	"audit": {"slot": "audit", "stamp": {"mode": "audit"}},
}

# Without an active exemption (the usual case) nothing is matched against the violations.
decide(violations, warnings) := placed_result(violations, set(), warnings) if {
	count(active_exemptions) == 0
} else := result if {
	exempt := exempting(violations)
	reference := input.image.reference
	live := {v | some v in violations; not exempt[v.code]}
	exempted := {object.union(v, {"image": reference, "exemptions": names}) |
		some v in violations
		names := exempt[v.code]
	}
	result := placed_result(live, exempted, warnings)
}

placed_result(live, exempted, warnings) := result if {
	reference := input.image.reference
	mode := params.mode
	place := placement[mode]
	stamp := object.union({"image": reference}, place.stamp)
	placed := {place.slot: {object.union(v, stamp) | some v in live}}
	deny := object.get(placed, "deny", set())
	demoted := object.get(placed, "warn", set()) | object.get(placed, "audit", set())
	result := {
		"allow": count(deny) == 0,
		"deny": deny,
		"warn": {object.union(w, {"image": reference}) | some w in warnings} | object.get(placed, "warn", set()),
		"audit": object.get(placed, "audit", set()),
		"mode": mode,
		"exemptions": active_names,
		"exempted": exempted,
		"notes": notes(mode, count(demoted), count(exempted)),
	}
}

notes(mode, demoted, exempted) := array.concat(mode_notes(mode, demoted), exemption_notes(exempted))

mode_notes(mode, demoted) := [sprintf("mode %s: %d violation(s) reported, not enforced", [mode, demoted])] if {
	demoted > 0
} else := []

exemption_notes(exempted) := [sprintf("%d violation(s) exempted by: %s", [exempted, concat(", ", active_names)])] if {
	exempted > 0
} else := []
