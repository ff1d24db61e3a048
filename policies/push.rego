# Entry point "push": POST /v1/data/sealgate/push/decision with the policy input.
package sealgate.push

import rego.v1

import data.sealgate.lib.checks
import data.sealgate.lib.outcome

decision := object.union(outcome.decide(checks.all_violations, checks.all_warnings), checks.validity)
