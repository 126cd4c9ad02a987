"""sandboxd.naming: the upstream rules where they are right, and never an invalid or silently merged name.

Upstream cases come from the upstream controller's tests (reference §3); the properties cover what upstream
got wrong (§10 G4, G6, G7): names past 63 characters, invalid label values, cuts that merge two inputs, and
two repos that share one slug.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandboxd import naming

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def is_dns_label(text: str) -> bool:
    # fullmatch: Python's ``$`` also matches before a trailing newline, so a ``^...$`` pattern would not do.
    return DNS_LABEL.fullmatch(text) is not None and len(text) <= 63


def is_label_value(text: str) -> bool:
    return LABEL_VALUE.fullmatch(text) is not None and len(text) <= 63


# Text that looks like an email: local part and domain with the characters people actually type, and some
# they should not (spaces, unicode, punctuation), so the sanitiser meets both.
LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+_-!#é ", min_size=1)
DOMAIN = st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,3}", fullmatch=True)
EMAILISH = st.one_of(st.emails(), st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN))
ANY_TEXT = st.text(max_size=300)
# Text near the edge of a valid label value: its characters, too many of them, and a few it forbids.
LABELISH = st.one_of(ANY_TEXT, st.text(alphabet="aZ09-_.\n /é", max_size=100))


# --- upstream cases -----------------------------------------------------------------------------------------


def test_owner_uid_follows_upstream() -> None:
    uid = naming.owner_uid("ceo@acme.com")
    assert uid.value == "ceo-at-acme-com"
    assert uid.email == "ceo@acme.com"
    assert not uid.truncated


def test_owner_uid_trims_and_lowercases_like_upstream() -> None:
    uid = naming.owner_uid("  CEO@Acme.COM ")
    assert (uid.value, uid.email) == ("ceo-at-acme-com", "ceo@acme.com")
    assert naming.owner_uid("first.last+dev_ops@acme.io").value == "first-last-plus-dev-ops-at-acme-io"


@pytest.mark.parametrize("email", ["", "   ", "...", "__", "é"])
def test_owner_uid_refuses_what_leaves_nothing_dns_safe(email: str) -> None:
    with pytest.raises(ValueError, match="does not yield a DNS-safe owner uid"):
        naming.owner_uid(email)


@pytest.mark.parametrize(
    ("email", "owner_id", "expected"),
    [
        ("ceo@acme.com", "", "sandbox-ceo-at-acme-com"),
        ("", "u-99", "sandbox-u-99"),
        ("Mixed.Case+User@Globex.io", "", "sandbox-mixed-case-plus-user-at-globex-io"),
        ("", "", "sandbox-user"),
        ("a@b", "", "sandbox-a-at-b"),
    ],
)
def test_sandbox_id_for_owner_follows_upstream(email: str, owner_id: str, expected: str) -> None:
    assert naming.sandbox_id_for_owner(email, owner_id) == expected


def test_repo_slug_follows_upstream() -> None:
    assert naming.repo_slug("acme/internal-tools") == "acme-internal-tools"
    assert naming.repo_slug(" Acme/Internal_Tools.v2 ") == "acme-internal-tools-v2"
    assert naming.pvc_name(naming.repo_slug("acme/eventforge")) == "repo-acme-eventforge"


def test_derived_names_of_one_owner() -> None:
    uid = naming.owner_uid("ceo@acme.com").value
    assert naming.namespace_for(uid) == "sandbox-ceo-at-acme-com"
    assert naming.route_prefix(uid) == "/sessions/ceo-at-acme-com/"
    assert naming.gitops_folder(uid) == "sandbox/ceo-at-acme-com"


def test_subjects_and_keys() -> None:
    assert naming.event_subject("create", "sb-1") == "sandbox.create.sb-1"
    assert naming.parse_event_subject("sandbox.delete.sb-1") == ("delete", "sb-1")
    assert naming.parse_event_subject("sandbox.delete") is None
    assert naming.parse_event_subject("other.delete.sb-1") is None
    assert naming.activity_subject("sb-1") == "sandbox.activity.sb-1"
    assert naming.scale_subject("sb-1") == "sandbox.scale.sb-1"
    assert naming.dlq_subject("sandbox.create.sb-1") == "sandbox.dlq.sandbox.create.sb-1"
    assert naming.status_key("sb-1") == naming.desired_key("sb-1") == "sb-1"
    assert naming.owner_key("ceo-at-acme-com") == "ceo-at-acme-com"
    assert tuple(f"sandbox.{verb}.*" for verb in naming.VERBS) == naming.EVENT_SUBJECTS


# --- owners: always a valid name, never a silent merge ------------------------------------------------------


@given(EMAILISH)
def test_owner_uid_is_a_dns_label_and_its_namespace_fits(email: str) -> None:
    try:
        uid = naming.owner_uid(email)
    except ValueError:
        return  # nothing DNS-safe left: refused with a reason, never an invalid name
    assert is_dns_label(uid.value), uid
    assert is_dns_label(naming.namespace_for(uid.value))
    assert len(naming.namespace_for(uid.value)) <= naming.DNS_LABEL_MAX
    assert uid.email == email.strip().lower()
    if uid.truncated:
        assert uid.value.endswith(f"-{naming.short_hash(uid.email)}")


@given(ANY_TEXT)
def test_owner_uid_of_any_text_is_valid_or_refused(text: str) -> None:
    try:
        uid = naming.owner_uid(text)
    except ValueError:
        return
    assert is_dns_label(uid.value)


@given(
    prefix=st.from_regex(r"[a-z0-9]{60,80}", fullmatch=True),
    one=st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    other=st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
)
def test_cut_owner_uids_keep_distinct_emails_distinct(prefix: str, one: str, other: str) -> None:
    # Two emails that agree on the first 60+ characters agree on everything a plain cut would keep.
    first, second = f"{prefix}{one}@acme.com", f"{prefix}{other}@acme.com"
    a, b = naming.owner_uid(first), naming.owner_uid(second)
    assert a.truncated and b.truncated
    assert (a.value == b.value) == (first == second)


def test_two_emails_on_one_owner_uid_are_detectable() -> None:
    # The sanitiser maps both to one uid (upstream rule); the uid carries its email so the caller can refuse.
    a, b = naming.owner_uid("a.b@acme.com"), naming.owner_uid("a-b@acme.com")
    assert a.value == b.value
    assert a.email != b.email


@given(email=ANY_TEXT, owner_id=ANY_TEXT)
def test_sandbox_id_for_owner_is_always_a_valid_sandbox_id(email: str, owner_id: str) -> None:
    sandbox_id = naming.sandbox_id_for_owner(email, owner_id)
    assert is_dns_label(sandbox_id)
    assert naming.is_sandbox_id(sandbox_id)
    assert sandbox_id.startswith("sandbox-")


@given(prefix=st.from_regex(r"[a-z]{60,70}", fullmatch=True), one=st.integers(0, 999), other=st.integers(0, 999))
def test_cut_sandbox_ids_keep_distinct_owners_distinct(prefix: str, one: int, other: int) -> None:
    a = naming.sandbox_id_for_owner(f"{prefix}{one}@acme.com")
    b = naming.sandbox_id_for_owner(f"{prefix}{other}@acme.com")
    assert len(a) <= 63 and len(b) <= 63
    assert (a == b) == (one == other)


@given(name=st.from_regex(r"[a-z0-9-]{0,120}", fullmatch=True), limit=st.integers(10, 63))
def test_cap_with_hash_cuts_only_what_is_too_long(name: str, limit: int) -> None:
    capped, cut = naming.cap_with_hash(name, limit, source=name)
    assert len(capped) <= limit
    assert cut == (len(name) > limit)
    if cut:
        assert capped.endswith(f"-{naming.short_hash(name)}")
    else:
        assert capped == name


# --- repos --------------------------------------------------------------------------------------------------

REPO = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,30}/[A-Za-z0-9._-]{1,80}", fullmatch=True)


@given(REPO)
def test_repo_slug_makes_a_pvc_name_that_is_a_dns_label(repo: str) -> None:
    try:
        slug = naming.repo_slug(repo)
    except ValueError:
        return  # e.g. "_/." has no letters or digits at all
    assert is_dns_label(slug)
    assert is_dns_label(naming.pvc_name(slug))


@given(owner=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True), repo=st.from_regex(r"[a-z]{1,10}", fullmatch=True))
def test_repo_slugs_refuses_two_repos_on_one_slug_naming_both(owner: str, repo: str) -> None:
    first, second = f"{owner}/{repo}-tools", f"{owner}/{repo}_tools"
    assert naming.repo_slug(first) == naming.repo_slug(second)
    with pytest.raises(ValueError, match="map to the same slug") as refused:
        naming.repo_slugs([second, first])
    assert repr(first) in str(refused.value)
    assert repr(second) in str(refused.value)


def test_repo_slugs_maps_each_slug_to_its_repo_in_order() -> None:
    assert naming.repo_slugs(["acme/web", " acme/api "]) == {"acme-api": "acme/api", "acme-web": "acme/web"}
    assert naming.repo_slugs([]) == {}


# --- labels -------------------------------------------------------------------------------------------------


@given(LABELISH)
def test_label_value_is_always_a_valid_label_value(text: str) -> None:
    assert is_label_value(naming.label_value(text)), repr(text)


@given(st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", fullmatch=True))
def test_label_value_keeps_valid_values_as_they_are(text: str) -> None:
    assert naming.label_value(text) == text


@given(text=LABELISH, other=LABELISH)
def test_label_value_keeps_changed_texts_apart(text: str, other: str) -> None:
    a, b = naming.label_value(text), naming.label_value(other)
    both_changed = a != text and b != other
    if both_changed and text != other:
        assert a != b


@pytest.mark.parametrize("text", ["acme\n", "sandbox-1\n", "\n"])
def test_a_trailing_newline_is_not_a_valid_name(text: str) -> None:
    assert not naming.is_sandbox_id(text)
    assert is_label_value(naming.label_value(text))


def test_a_raw_string_becomes_a_sandbox_id_only_once_checked() -> None:
    assert naming.as_sandbox_id("sb-1") == "sb-1"
    assert naming.as_sandbox_id("Not_An_Id") is None and naming.as_sandbox_id("") is None
    # KV keys: a key written by hand that could not be a sandbox id is left out, the order kept.
    assert naming.sandbox_ids(["sb-2", "BAD.key", "sb-1", "x" * 64]) == ["sb-2", "sb-1"]
