"""Where the GitOps repository is, and credentials taken out of its URL."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from sandboxd.adapters.gitops.remote import parse_remote


def test_a_path_is_a_local_repository_made_absolute(tmp_path: Path) -> None:
    remote = parse_remote(str(tmp_path / "gitops"))
    assert remote.local_path == tmp_path / "gitops"
    assert remote.url == str(tmp_path / "gitops")
    assert not remote.has_credentials


def test_a_file_url_is_local_too() -> None:
    remote = parse_remote("file:///srv/git/gitops.git")
    assert remote.local_path == Path("/srv/git/gitops.git")


def test_http_credentials_leave_the_url() -> None:
    remote = parse_remote("https://bot:p%40ss%2Fw@git.example:8443/org/gitops.git")
    assert remote.url == "https://git.example:8443/org/gitops.git"
    assert remote.username == "bot"
    assert remote.password is not None
    assert remote.password.get_secret_value() == "p@ss/w"
    assert remote.local_path is None


def test_explicit_credentials_win_over_the_urls() -> None:
    remote = parse_remote("http://a:b@git.example/x.git", username="bot", password=SecretStr("token"))
    assert (remote.username, remote.password and remote.password.get_secret_value()) == ("bot", "token")
    assert remote.url == "http://git.example/x.git"


def test_redaction_covers_raw_and_percent_encoded_forms() -> None:
    remote = parse_remote("https://bot:p%40ss@git.example/x.git")
    text = "failed for p@ss and https://bot:p%40ss@git.example"
    assert "p@ss" not in remote.redact(text)
    assert "p%40ss" not in remote.redact(text)
    assert "p@ss" not in repr(remote)


def test_ssh_urls_are_left_to_the_environment() -> None:
    scp_like = parse_remote("git@git.example:org/gitops.git")
    assert (scp_like.url, scp_like.local_path, scp_like.has_credentials) == (
        "git@git.example:org/gitops.git",
        None,
        False,
    )
    ssh = parse_remote("ssh://git@git.example/org/gitops.git")
    assert ssh.url == "ssh://git@git.example/org/gitops.git"
