"""Image reference parsing and normalisation, as Docker's reference grammar defines it."""

from __future__ import annotations

import pytest

from app.errors import InputError
from app.oci.digests import compute_digest, fallback_tag, matches_digest, parse_digest
from app.oci.refs import ImageRef

D = "sha256:" + "ab" * 32


class TestParse:
    @pytest.mark.parametrize(
        ("text", "registry", "repository", "tag", "digest", "normalised"),
        [
            (
                "nginx",
                "docker.io",
                "library/nginx",
                "latest",
                None,
                "docker.io/library/nginx:latest",
            ),
            (
                "nginx:1.27",
                "docker.io",
                "library/nginx",
                "1.27",
                None,
                "docker.io/library/nginx:1.27",
            ),
            (
                "docker.io/nginx",
                "docker.io",
                "library/nginx",
                "latest",
                None,
                "docker.io/library/nginx:latest",
            ),
            (
                "index.docker.io/team/app",
                "docker.io",
                "team/app",
                "latest",
                None,
                "docker.io/team/app:latest",
            ),
            ("team/app", "docker.io", "team/app", "latest", None, "docker.io/team/app:latest"),
            ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest"),
            ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
            (
                "127.0.0.1:5000/a/b/c:v1",
                "127.0.0.1:5000",
                "a/b/c",
                "v1",
                None,
                "127.0.0.1:5000/a/b/c:v1",
            ),
            ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", None, "[::1]:5000/app:v1"),
            ("ghcr.io/o/r@" + D, "ghcr.io", "o/r", None, D, "ghcr.io/o/r@" + D),
            ("ghcr.io/o/r:v1@" + D, "ghcr.io", "o/r", "v1", D, "ghcr.io/o/r:v1@" + D),
            (
                "reg.example.com/a.b/c_d/e__f/g-h--i:V_1.0-x",
                "reg.example.com",
                "a.b/c_d/e__f/g-h--i",
                "V_1.0-x",
                None,
                "reg.example.com/a.b/c_d/e__f/g-h--i:V_1.0-x",
            ),
        ],
    )
    def test_valid(
        self,
        text: str,
        registry: str,
        repository: str,
        tag: str | None,
        digest: str | None,
        normalised: str,
    ) -> None:
        ref = ImageRef.parse(text)
        assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
            registry,
            repository,
            tag,
            digest,
        )
        assert str(ref) == normalised
        assert ImageRef.parse(str(ref)) == ref

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("", "empty"),
            (" nginx", "whitespace"),
            ("team/App", "must be lowercase"),
            ("ghcr.io/Team/app", "must be lowercase"),
            ("foo::bar", "path component"),
            ("nginx:", "tag ''"),
            ("nginx:-x", "tag '-x'"),
            ("nginx:" + "a" * 129, "tag"),
            ("a//b", "path component ''"),
            ("a/b/", "path component ''"),
            ("-a/b", "path component '-a'"),
            ("a_/b", "path component 'a_'"),
            ("bad_host:5000/app", "registry 'bad_host:5000'"),
            ("app@sha256:abc", "64 lowercase hex"),
            ("app@sha256:" + "AB" * 32, "64 lowercase hex"),
            ("app@md5:" + "a" * 32, "not supported"),
            ("app@" + D + "@" + D, "more than one '@'"),
            ("app@nodigest", "expected '<algorithm>:<hex>'"),
            ("reg.io/" + "a" * 250, "longer than 255"),
        ],
    )
    def test_invalid_names_the_problem(self, text: str, problem: str) -> None:
        with pytest.raises(InputError) as caught:
            ImageRef.parse(text)
        assert problem in caught.value.message
        assert caught.value.http_status == 400

    def test_with_digest_and_with_tag(self) -> None:
        ref = ImageRef.parse("127.0.0.1:5000/app:v1")
        pinned = ref.with_digest(D)
        assert str(pinned) == f"127.0.0.1:5000/app:v1@{D}"
        assert pinned.reference == D and ref.reference == "v1"
        assert pinned.with_tag("v2") == ImageRef.parse("127.0.0.1:5000/app:v2")
        assert pinned.name == "127.0.0.1:5000/app"
        with pytest.raises(InputError):
            ref.with_digest("sha256:short")
        with pytest.raises(InputError):
            ref.with_tag("not a tag")


class TestDigests:
    def test_compute_and_match(self) -> None:
        digest = compute_digest(b"{}")
        assert digest == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        assert matches_digest(b"{}", digest)
        assert not matches_digest(b"{ }", digest)
        assert matches_digest(b"x", compute_digest(b"x", algorithm="sha512"))

    def test_parse_refuses_unverifiable(self) -> None:
        with pytest.raises(InputError, match="not supported"):
            parse_digest("blake3:" + "a" * 64)

    def test_fallback_tag(self) -> None:
        assert fallback_tag(D) == "sha256-" + "ab" * 32
        long = "sha512:" + "c" * 128
        assert fallback_tag(long) == "sha512-" + "c" * 64
