# Entry point "admission": POST /v1/data/sealgate/admission/decision with the policy input.
package sealgate.admission

import rego.v1

import data.sealgate.lib.checks
import data.sealgate.lib.outcome

decision := object.union(outcome.decide(checks.all_violations, checks.all_warnings), checks.validity)
