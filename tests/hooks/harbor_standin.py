"""``HarborApiStandIn``: a stand-in for Harbor's artifact-additions API, served on 127.0.0.1.

Harbor cannot run here. This answers only
``GET /api/v2.0/projects/{p}/repositories/{r}/artifacts/{digest}/additions/vulnerabilities``
with basic auth, in the shape Harbor documents (report keyed by its media type), and records
the requests it saw.
"""

from __future__ import annotations

import base64

from tests.fixtures.standins import StandIn, StandInRequest, StandInResponse

REPORT_TYPE = "application/vnd.security.vulnerability.report; version=1.1"


class HarborApiStandIn(StandIn):
    def __init__(self, *, username: str, password: str) -> None:
        super().__init__()
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.reports: dict[str, dict[str, object]] = {}  # raw request path -> report
        self.seen: list[StandInRequest] = []

    def add_report(self, path: str, vulnerabilities: list[dict[str, object]]) -> None:
        self.reports[path] = {
            REPORT_TYPE: {
                "generated_at": "2026-11-30T10:00:00Z",
                "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.0"},
                "severity": "Critical",
                "vulnerabilities": vulnerabilities,
            }
        }

    def handle(self, request: StandInRequest) -> StandInResponse:
        self.seen.append(request)
        if request.headers.get("authorization") != self.expected:
            return StandInResponse.json({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        report = self.reports.get(request.path)
        if report is None:
            return StandInResponse.json({"errors": [{"code": "NOT_FOUND"}]}, status=404)
        return StandInResponse.json(report)
