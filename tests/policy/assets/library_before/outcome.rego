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

covers(exemption, code) if count(object.get(exemption, "rules", [])) == 0

covers(exemption, code) if {
	some pattern in exemption.rules
	glob.match(pattern, ["."], code)
}

exempting(v) := {e.name | some e in active_exemptions; covers(e, v.code)}

stamp(v) := object.union(v, {"image": input.image.reference})

decide(violations, warnings) := result if {
	live := {stamp(v) | some v in violations; count(exempting(v)) == 0}
	exempted := {object.union(stamp(v), {"exemptions": sort(exempting(v))}) | some v in violations; count(exempting(v)) > 0}
	mode := params.mode
	deny := {v | some v in live; mode == "enforce"}
	demoted := {object.union(v, {"mode": mode}) | some v in live; mode != "enforce"}
	warned := {stamp(w) | some w in warnings} | {v | some v in demoted; mode == "warn"}
	audited := {v | some v in demoted; mode == "audit"}
	result := {
		"allow": count(deny) == 0,
		"deny": deny,
		"warn": warned,
		"audit": audited,
		"mode": mode,
		"exemptions": sort({e.name | some e in active_exemptions}),
		"exempted": exempted,
		"notes": notes(mode, count(demoted), count(exempted)),
	}
}

notes(mode, demoted, exempted) := array.concat(mode_notes(mode, demoted), exemption_notes(exempted))

mode_notes(mode, demoted) := [sprintf("mode %s: %d violation(s) reported, not enforced", [mode, demoted])] if {
	demoted > 0
} else := []

exemption_notes(exempted) := [sprintf("%d violation(s) exempted by: %s", [exempted, concat(", ", sort({e.name | some e in active_exemptions}))])] if {
	exempted > 0
} else := []
