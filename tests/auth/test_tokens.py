"""API tokens: stored hashed, checked on every request, scoped to images."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.auth import AdminDep, PrincipalDep
from app.auth.tokens import authenticate, create_token, revoke_token
from app.db.models import ApiToken
from app.db.session import session_scope
from app.errors import AuthError, ConflictError, ForbiddenError
from app.main import create_app
from app.services import Services


class TestTokens:
    def test_plaintext_is_never_stored(self, db_session: Session) -> None:
        issued = create_token(db_session, name="ci", scopes=["sign:ghcr.io/acme/*"])
        row = db_session.scalar(select(ApiToken).where(ApiToken.name == "ci"))
        assert row is not None
        assert issued.token.startswith("sgt_")
        assert issued.token not in row.token_hash
        assert authenticate(db_session, issued.token).name == "ci"

    @pytest.mark.parametrize("presented", [None, "", "sgt_wrong", "Bearer x", "x" * 500])
    def test_missing_or_wrong_tokens_are_refused(
        self, db_session: Session, presented: str | None
    ) -> None:
        create_token(db_session, name="ci", scopes=["admin"])
        with pytest.raises(AuthError):
            authenticate(db_session, presented)

    def test_revoked_and_expired_tokens_are_refused(self, db_session: Session) -> None:
        revoked = create_token(db_session, name="old", scopes=["admin"])
        revoke_token(db_session, name="old")
        with pytest.raises(AuthError, match="revoked"):
            authenticate(db_session, revoked.token)
        expired = create_token(
            db_session,
            name="short",
            scopes=["admin"],
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        )
        with pytest.raises(AuthError, match="expired"):
            authenticate(db_session, expired.token)

    def test_duplicate_names_conflict(self, db_session: Session) -> None:
        create_token(db_session, name="ci", scopes=["admin"])
        with pytest.raises(ConflictError):
            create_token(db_session, name="ci", scopes=["admin"])

    def test_out_of_scope_is_forbidden(self, db_session: Session) -> None:
        issued = create_token(db_session, name="ci", scopes=["sign:ghcr.io/acme/*"])
        principal = authenticate(db_session, issued.token)
        principal.authorize("sign", "ghcr.io/acme/api")
        with pytest.raises(ForbiddenError, match=r"may not sign ghcr\.io/other/api"):
            principal.authorize("sign", "ghcr.io/other/api")
        with pytest.raises(ForbiddenError):
            principal.require_admin()


class TestBearerDependency:
    @pytest.fixture
    def api(self, services: Services) -> TestClient:
        app = create_app(services=services)
        router = APIRouter()

        @router.get("/whoami")
        async def whoami(principal: PrincipalDep) -> dict[str, str]:
            return {"name": principal.name}

        @router.get("/admin-only")
        async def admin_only(admin: AdminDep) -> dict[str, str]:
            return {"name": admin.name}

        app.include_router(router)
        return TestClient(app)

    def _issue(self, services: Services, name: str, scopes: list[str]) -> str:
        with session_scope(services.sessions) as session:
            return create_token(session, name=name, scopes=scopes).token

    def test_valid_token(self, api: TestClient, services: Services) -> None:
        token = self._issue(services, "ci", ["sign:**"])
        with api:
            response = api.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        assert response.json() == {"name": "ci"}

    def test_missing_token_is_401_with_challenge(self, api: TestClient) -> None:
        with api:
            response = api.get("/whoami")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "auth.unauthenticated"

    def test_wrong_token_is_401(self, api: TestClient) -> None:
        with api:
            response = api.get("/whoami", headers={"Authorization": "Bearer sgt_forged"})
        assert response.status_code == 401

    def test_non_admin_is_403_on_admin_routes(self, api: TestClient, services: Services) -> None:
        token = self._issue(services, "ci", ["sign:**"])
        with api:
            response = api.get("/admin-only", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "auth.not_admin"
