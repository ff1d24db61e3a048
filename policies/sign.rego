# Entry point "sign": POST /v1/data/sealgate/sign/decision with the policy input.
package sealgate.sign

import rego.v1

import data.sealgate.lib.checks
import data.sealgate.lib.outcome

decision := object.union(outcome.decide(checks.content_violations, checks.all_warnings), checks.validity)
