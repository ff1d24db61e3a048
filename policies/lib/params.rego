# Parameters in effect for the image being decided.
#
# data.parameters.defaults, overridden by data.parameters.namespaces[<namespace>]
# (admission only), overridden by the most specific data.parameters.repositories
# pattern matching "<registry>/<repository>" (glob, "/" separates segments, "**"
# spans several). Overrides merge deeply (object.union): name only what changes.
package sealgate.lib.params

import rego.v1

image_name := sprintf("%s/%s", [input.image.registry, input.image.repository])

default namespace := ""

namespace := ns if {
	ns := input.kubernetes.namespace
	is_string(ns)
}

# Parameters are read through direct references: a reference to all of "data" would
# make every rule depend on every other one (OPA reports that as recursion).
default defaults := {}

defaults := data.parameters.defaults

default namespace_overrides := {}

namespace_overrides := data.parameters.namespaces[namespace]

repository_patterns contains pattern if {
	some pattern, _ in data.parameters.repositories
	glob.match(pattern, ["/"], image_name)
}

# The longest matching pattern is the most specific; ties go to the greatest string
# so the choice never depends on evaluation order.
default repository_overrides := {}

repository_overrides := data.parameters.repositories[best] if {
	longest := max({count(p) | some p in repository_patterns})
	best := max({p | some p in repository_patterns; count(p) == longest})
}

effective := object.union(object.union(defaults, namespace_overrides), repository_overrides)

modes := {"enforce", "warn", "audit"}

# An unknown mode is treated as enforce: configuration mistakes fail closed.
default mode := "enforce"

mode := m if {
	m := effective.mode
	m in modes
}

# The evaluation time in nanoseconds, from the input so decisions replay exactly.
now_ns := time.parse_rfc3339_ns(input.evaluated_at)
