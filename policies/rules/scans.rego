# Scans: a missing scan is a warning unless data requires scans (then a denial); a scan
# older than max_age_seconds is a denial; a scan read from an unsigned referrer is
# flagged, since anyone able to push to the repository could have written it.
package sealgate.rules.scans

import rego.v1

import data.sealgate.lib.durations
import data.sealgate.lib.params

settings := object.get(params.effective, "scans", {})

required if object.get(settings, "required", false) == true

no_scan if object.get(input, "scan", null) == null

missing := {
	"code": "scan.missing",
	"message": sprintf("%s has no vulnerability scan", [input.image.reference]),
	"fix": "scan the image and upload the report (sealgate scan ingest IMAGE REPORT)",
}

violations contains missing if {
	no_scan
	required
}

warnings contains missing if {
	no_scan
	not required
}

violations contains v if {
	max_age := object.get(settings, "max_age_seconds", 604800)
	input.scan.age_seconds > max_age
	v := {
		"code": "scan.stale",
		"message": sprintf("the newest scan of %s is %s old; at most %s allowed", [input.image.reference, durations.human(input.scan.age_seconds), durations.human(max_age)]),
		"fix": "rescan the image and upload the new report",
		"age_seconds": input.scan.age_seconds,
		"max_age_seconds": max_age,
	}
}

warnings contains w if {
	input.scan.source == "unsigned_referrer"
	w := {
		"code": "scan.unverified",
		"message": sprintf("the scan of %s came from an unsigned referrer", [input.image.reference]),
		"fix": "upload scans through Sealgate or attach them as signed attestations",
	}
}

# When this decision stops holding: the moment the scan's age passes the maximum (the
# decision cache keeps a decision no longer than that).
limits contains until if {
	max_age := object.get(settings, "max_age_seconds", 604800)
	input.scan.age_seconds <= max_age
	until := time.parse_rfc3339_ns(input.scan.scanned_at) + ((max_age + 1) * 1000000000)
}

# A registry's summary (counts only) satisfies "a scan exists" unless scans.require_findings
# is true; it is always flagged, since allowlists and VEX cannot apply to it.
summary_only if input.scan.summary_only == true

violations contains v if {
	summary_only
	object.get(settings, "require_findings", false) == true
	v := {
		"code": "scan.summary_only",
		"message": sprintf("the scan of %s is a registry summary without findings; findings are required", [input.image.reference]),
		"fix": "configure SEALGATE_HARBOR_URL and credentials so that Sealgate reads the full report, or upload the report",
	}
}

warnings contains w if {
	summary_only
	not object.get(settings, "require_findings", false) == true
	w := {
		"code": "scan.summary_only",
		"message": sprintf("the scan of %s is a registry summary: counts only, no findings", [input.image.reference]),
		"fix": "configure SEALGATE_HARBOR_URL and credentials so that Sealgate reads the full report",
	}
}
