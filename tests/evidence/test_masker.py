"""Secret values never reach the captured logs, whatever the chunking (evidence/redact.py StreamMasker)."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterable, Sequence

import pytest

from aido.evidence.redact import (
    MASK,
    MIN_SECRET_LENGTH,
    StreamMasker,
    mask_text,
    secret_values,
)

# --- references ------------------------------------------------------------------------------------


def reference(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """One-shot masking, by brute force: every occurrence of every secret is an interval; intervals
    that overlap merge into one run; each run becomes one MASK (runs that only touch stay apart)."""
    intervals = []
    for s in {s for s in secrets if s}:
        intervals += [(i, i + len(s)) for i in range(len(data) - len(s) + 1) if data[i : i + len(s)] == s]
    out = bytearray()
    pos = 0
    run_end = -1
    for start, end in sorted(intervals):
        if start < run_end:
            run_end = max(run_end, end)
        else:
            out += data[pos:start] + MASK
            run_end = end
        pos = max(pos, run_end)
    return bytes(out + data[pos:])


def replace_reference(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """The plain one-shot replace (longest first): right whenever no secret's end can begin another."""
    ordered = sorted(set(secrets), key=len, reverse=True)
    return re.sub(b"|".join(re.escape(s) for s in ordered), MASK, data)


def run_stream(masker: StreamMasker, chunks: Iterable[bytes]) -> bytes:
    return b"".join(masker.feed(c) for c in chunks) + masker.flush()


def chunked(secrets: Iterable[str], chunks: Iterable[bytes]) -> bytes:
    return run_stream(StreamMasker(secrets), chunks)


def split_randomly(data: bytes, rng: random.Random, max_size: int = 12) -> list[bytes]:
    chunks = []
    pos = 0
    while pos < len(data):
        size = rng.choice([0, 1, 1, 2, rng.randint(1, max_size)])
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def every_split(data: bytes) -> Iterable[list[bytes]]:
    """One chunk, 1-byte chunks, and every way to cut the data in two and in three."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
        for j in range(i, len(data) + 1):
            yield [data[:i], data[i:j], data[j:]]


def assert_all_chunkings(secrets: Sequence[str], data: bytes, expected: bytes) -> None:
    for chunks in every_split(data):
        assert chunked(secrets, chunks) == expected, chunks


# --- secret_values ---------------------------------------------------------------------------------


def test_secret_values_picks_secret_names_only() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_TOKEN": "ghp_0123456789",
        "DB_PASSWORD": "hunter22",
        "HOME": "/home/someone",
    }
    assert secret_values(env) == ["ghp_0123456789", "hunter22"]


def test_secret_values_min_length_dedup_and_order() -> None:
    env = {
        "A_TOKEN": "abcd",  # exactly MIN_SECRET_LENGTH: kept
        "B_TOKEN": "abc",  # too short: would mask ordinary text
        "EMPTY_SECRET": "",
        "C_KEY": "wxyz",  # same length as A_TOKEN: keeps env order
        "D_PASSWORD": "longest-of-all",
        "E_PASSWORD": "abcd",  # duplicate value
        "F_AUTH": "middle",
    }
    assert MIN_SECRET_LENGTH == 4
    assert secret_values(env) == ["longest-of-all", "middle", "abcd", "wxyz"]
    assert secret_values({}) == []
    assert secret_values({"MODE": "something-long"}) == []


# --- inactive masker -------------------------------------------------------------------------------


@pytest.mark.parametrize("secrets", [[], [""], ["abc", "x", ""]])
def test_no_secrets_is_inactive_and_passes_through_the_same_object(secrets: list[str]) -> None:
    masker = StreamMasker(secrets)
    assert not masker.active
    data = b"TOKEN=abc x \xff\xfe not utf-8"
    assert masker.feed(data) is data
    assert masker.feed(b"") == b""
    assert masker.flush() == b""
    assert mask_text("abc x", secrets) == "abc x"


def test_active_masker() -> None:
    assert StreamMasker(["abcd"]).active
    assert StreamMasker(iter(["abc", "abcd"])).active  # any iterable


# --- basic masking ---------------------------------------------------------------------------------


def test_env_dump_is_masked() -> None:
    env = {"GITHUB_TOKEN": "ghp_S3cr3tT0k3nValue", "DB_PASSWORD": "correct horse", "HOME": "/root"}
    dump = b"".join(f"{k}={v}\n".encode() for k, v in env.items())
    out = chunked(secret_values(env), [dump])
    assert out == b"GITHUB_TOKEN=***\nDB_PASSWORD=***\nHOME=/root\n"


def test_every_occurrence_is_masked() -> None:
    data = b"pw1234 and pw1234, again:pw1234"
    assert chunked(["pw1234"], [data]) == b"*** and ***, again:***"
    assert_all_chunkings(["pw1234"], data, b"*** and ***, again:***")


def test_secret_split_across_chunks_at_every_point() -> None:
    data = b"before s3cr3t-value after"
    assert_all_chunkings(["s3cr3t-value"], data, b"before *** after")


def test_one_byte_chunks() -> None:
    data = b"x" * 50 + b"s3cr3t" + b"y" * 50 + b"s3cr3ts3cr3t"
    expected = b"x" * 50 + b"***" + b"y" * 50 + b"******"
    assert chunked(["s3cr3t"], [bytes([b]) for b in data]) == expected


def test_output_without_secrets_is_byte_identical() -> None:
    rng = random.Random(1234)
    data = rng.randbytes(5000) + "héllo wörld ✓\n".encode() + b"\x00\xff\xfe\x80"
    secrets = ["zzzzQQQQzzzz", "never-printed"]
    assert secrets[0].encode() not in data and secrets[1].encode() not in data
    for _ in range(50):
        assert chunked(secrets, split_randomly(data, rng, 300)) == data
    # Near misses: every proper prefix of the secret, at every chunk boundary.
    near = b"|".join(b"never-printed"[:k] for k in range(13)) + b"|never-printeD"
    assert_all_chunkings(["never-printed"], near, near)


def test_whole_stream_is_a_secret() -> None:
    assert_all_chunkings(["abcdef"], b"abcdef", MASK)


def test_empty_stream() -> None:
    masker = StreamMasker(["abcd"])
    assert masker.feed(b"") == b""
    assert masker.flush() == b""
    assert chunked(["abcd"], []) == b""


# --- end of stream ---------------------------------------------------------------------------------


def test_secret_at_the_very_end_is_masked_at_flush() -> None:
    masker = StreamMasker(["tail-secret"])
    emitted = masker.feed(b"log line\ntail-secret")
    assert b"tail" not in emitted  # could still be a longer secret, or only begin here: held back
    assert emitted + masker.flush() == b"log line\n***"
    assert_all_chunkings(["tail-secret"], b"log line\ntail-secret", b"log line\n***")


def test_incomplete_secret_at_end_is_emitted_as_is() -> None:
    masker = StreamMasker(["tail-secret"])
    emitted = masker.feed(b"log line\ntail-secre")
    assert emitted + masker.flush() == b"log line\ntail-secre"


def test_shorter_secret_at_end_while_longer_one_may_follow() -> None:
    secrets = ["abcd", "abcdefgh"]
    assert_all_chunkings(secrets, b"x abcd", b"x ***")
    assert_all_chunkings(secrets, b"x abcdefg", b"x ***efg")
    assert_all_chunkings(secrets, b"x abcdefgh", b"x ***")


def test_masker_is_reusable_after_flush() -> None:
    masker = StreamMasker(["abcdef"])
    assert masker.feed(b"xx abc") + masker.flush() == b"xx abc"
    # The held back "abc" of the first stream does not join "def" of the second one.
    assert masker.feed(b"def abcdef") + masker.flush() == b"def ***"


# --- overlapping secrets ---------------------------------------------------------------------------


def test_prefix_overlap_longest_wins() -> None:
    secrets = ["abcd", "abcdef"]
    assert_all_chunkings(secrets, b"xxabcdefyy", b"xx***yy")
    assert_all_chunkings(secrets, b"xxabcdexyy", b"xx***exyy")
    assert_all_chunkings(secrets, b"abcdabcdef", b"******")
    # Same result whatever the order the secrets are given in.
    assert_all_chunkings(list(reversed(secrets)), b"xxabcdefyy", b"xx***yy")


def test_substring_overlap_longest_wins() -> None:
    secrets = ["bcde", "abcdefg", "defg"]
    assert_all_chunkings(secrets, b"-abcdefg-", b"-***-")
    assert_all_chunkings(secrets, b"-bcdefg-", b"-***-")  # bcde and defg overlap: one mask
    assert_all_chunkings(secrets, b"-abcdef-", b"-a***f-")


def test_partial_overlap_masks_both_whole() -> None:
    # Neither secret may leak a byte: "abcd" then "ef" would leave "ef" of "cdef" visible.
    secrets = ["abcd", "cdef"]
    assert_all_chunkings(secrets, b"<abcdef>", b"<***>")
    assert_all_chunkings(secrets, b"<cdefabcd>", b"<******>")  # touching, not overlapping


def test_self_overlapping_secret() -> None:
    assert_all_chunkings(["aaaa"], b"xaaaaaay", b"x***y")
    assert_all_chunkings(["abab"], b"ababab!abab", b"***!***")
    assert_all_chunkings(["aaaa"], b"aaa", b"aaa")


def test_long_run_of_overlaps_is_one_mask_whatever_the_chunking() -> None:
    data = b"x" + b"a" * 1000 + b"y"
    rng = random.Random(7)
    for _ in range(20):
        assert chunked(["aaaa", "aaaaaaa"], split_randomly(data, rng, 50)) == b"x***y"


def test_adjacent_occurrences_stay_separate_masks() -> None:
    assert_all_chunkings(["abcd", "efgh"], b"abcdefgh", b"******")


# --- random chunkings against the references -------------------------------------------------------


def random_case(rng: random.Random, n_secrets: int, alphabet: bytes) -> tuple[list[bytes], bytes]:
    secrets = [bytes(rng.choices(alphabet, k=rng.randint(4, 9))) for _ in range(n_secrets)]
    parts = []
    for _ in range(rng.randint(0, 12)):
        if rng.random() < 0.5:
            parts.append(rng.choice(secrets))
        else:
            parts.append(bytes(rng.choices(alphabet, k=rng.randint(0, 10))))
    if rng.random() < 0.3:  # a secret cut short at the end of the stream
        s = rng.choice(secrets)
        parts.append(s[: rng.randint(1, len(s) - 1)])
    return secrets, b"".join(parts)


@pytest.mark.parametrize("n_secrets", [1, 2, 3, 12])
@pytest.mark.parametrize("alphabet", [b"ab", b"abc", b"abcdefgh\x00\xff"])
def test_random_chunkings_match_reference(n_secrets: int, alphabet: bytes) -> None:
    rng = random.Random(n_secrets * 1000 + len(alphabet))
    for _ in range(600):
        secrets, data = random_case(rng, n_secrets, alphabet)
        # Secrets here are ASCII or raw bytes; latin-1 + surrogateescape maps them back to themselves.
        names = [s.decode("utf-8", "surrogateescape") for s in secrets]
        expected = reference(data, secrets)
        for _ in range(3):
            assert chunked(names, split_randomly(data, rng)) == expected, (secrets, data)
        assert chunked(names, [data]) == expected
        assert chunked(names, [data[i : i + 1] for i in range(len(data))]) == expected


def test_reference_agrees_with_plain_replace_when_secrets_cannot_overlap() -> None:
    rng = random.Random(99)
    secrets = [b"k3y-ALPHA", b"tok_beta", b"pw:gamma!"]  # no suffix of one is a prefix of another
    names = [s.decode() for s in secrets]
    for _ in range(300):
        parts = [rng.choice([*secrets, b"k3y-", b"tok", b" ", b"pw:gam", b"\n", rng.randbytes(5)])]
        parts += [rng.choice([*secrets, b"k3y-", b"tok", b" ", b"pw:gam", b"\n"]) for _ in range(20)]
        data = b"".join(parts)
        expected = replace_reference(data, secrets)
        assert reference(data, secrets) == expected
        assert chunked(names, split_randomly(data, rng, 20)) == expected
        assert mask_text(data.decode("latin-1"), names) == expected.decode("latin-1")


# --- what is held back -----------------------------------------------------------------------------


@pytest.mark.parametrize("n_secrets", [1, 3, 12])
def test_held_back_tail_is_bounded_and_emitted_output_is_final(n_secrets: int) -> None:
    rng = random.Random(4242 + n_secrets)
    for _ in range(300):
        secrets, data = random_case(rng, n_secrets, b"abc")
        names = [s.decode() for s in secrets]
        longest = max(len(s) for s in secrets)
        expected = reference(data, secrets)
        masker = StreamMasker(names)
        emitted = b""
        fed = b""
        for chunk in split_randomly(data, rng):
            fed += chunk
            emitted += masker.feed(chunk)
            # Never a partial secret that later completes: what is out is final.
            assert expected.startswith(emitted), (secrets, data, emitted)
            # What flush would still emit is all that is held back: at most longest - 1 bytes.
            rest = copy.deepcopy(masker).flush()
            assert len(rest) <= longest - 1
            assert emitted + rest == reference(fed, secrets)  # as if the stream ended here
        assert emitted + masker.flush() == expected


def test_held_back_is_exactly_the_last_longest_minus_one_bytes_of_plain_output() -> None:
    masker = StreamMasker(["a-very-long-secret-value", "shrt"])  # longest: 24 bytes
    fed = b""
    emitted = b""
    for i in range(200):
        chunk = f"line {i}\n".encode()
        fed += chunk
        emitted += masker.feed(chunk)
        assert fed.startswith(emitted)
        assert len(fed) - len(emitted) == min(len(fed), 23)
    assert emitted + masker.flush() == fed


def test_big_chunk_holds_back_only_the_tail() -> None:
    masker = StreamMasker(["0123456789"])
    data = b"z" * 100_000
    out = masker.feed(data)
    assert out == data[:-9]
    assert masker.flush() == b"z" * 9


# --- non-UTF-8 and non-ASCII -----------------------------------------------------------------------


def test_undecodable_env_value_matches_its_raw_bytes() -> None:
    # os.environ keeps undecodable bytes as lone surrogates; the task prints the raw bytes.
    value = b"\xffpass\xfe\x80word".decode("utf-8", "surrogateescape")
    data = b"VALUE=\xffpass\xfe\x80word\n\xff\xfe"
    assert_all_chunkings([value], data, b"VALUE=***\n\xff\xfe")


def test_non_ascii_secret_split_inside_a_character() -> None:
    secret = "pässwörd✓"
    data = f"A_SECRET={secret} ok".encode()
    assert_all_chunkings([secret], data, b"A_SECRET=*** ok")


def test_non_utf8_noise_around_secrets() -> None:
    rng = random.Random(5)
    for _ in range(100):
        data = rng.randbytes(40) + b"s3cr3t!" + rng.randbytes(40)
        assert chunked(["s3cr3t!"], split_randomly(data, rng)) == reference(data, [b"s3cr3t!"])


# --- mask_text -------------------------------------------------------------------------------------


def test_mask_text_basic() -> None:
    assert mask_text("token=ghp_abc123 and ghp_abc123", ["ghp_abc123"]) == "token=*** and ***"
    assert mask_text("nothing here", ["ghp_abc123"]) == "nothing here"
    assert mask_text("", ["ghp_abc123"]) == ""
    assert mask_text("abc is short", ["abc"]) == "abc is short"  # below MIN_SECRET_LENGTH
    assert mask_text("xabcdefy", iter(["abcd", "abcdef"])) == "x***y"
    assert mask_text("<abcdef>", ["abcd", "cdef"]) == "<***>"


def test_mask_text_non_ascii_and_surrogates() -> None:
    assert mask_text("clé: pässwörd✓ fin", ["pässwörd✓"]) == "clé: *** fin"
    assert mask_text("ü pässwörd", ["ässw"]) == "ü p***örd"
    odd = "\udcffsecret\ud800"
    assert mask_text(f"x{odd}y \ud800", [odd]) == "x***y \ud800"


def test_mask_text_agrees_with_stream() -> None:
    rng = random.Random(11)
    for _ in range(300):
        secrets, data = random_case(rng, 3, b"abc")
        names = [s.decode() for s in secrets]
        assert mask_text(data.decode(), names) == chunked(names, [data]).decode()


# --- throughput ------------------------------------------------------------------------------------


def test_throughput_sanity_64_mib() -> None:
    """64 MiB in 64 KiB chunks with 3 secrets, some split across chunk boundaries (no timing asserted)."""
    secrets = ["ghp_R4nd0mT0k3nV4lu3xyz", "correct-horse-battery", "AKIAIOSFODNN7EXAMPLE"]
    encoded = [s.encode() for s in secrets]
    chunk_size = 64 << 10
    block = random.Random(2024).randbytes(chunk_size)
    chunks = [block] * (64 << 20 >> 16)
    planted = 0
    for i in range(0, len(chunks) - 1, 97):
        secret = encoded[planted % 3]
        cut = 1 + planted % (len(secret) - 1)
        chunks[i] = block[:-cut] + secret[:cut]
        chunks[i + 1] = secret[cut:] + block[len(secret) - cut :]
        planted += 1
    masker = StreamMasker(secrets)
    out = b"".join([masker.feed(c) for c in chunks]) + masker.flush()
    expected = b"".join(chunks)
    assert len(expected) == 64 << 20
    for s in encoded:
        expected = expected.replace(s, MASK)
    assert out == expected
    assert planted >= 10
    assert len(out) == (64 << 20) - sum(len(encoded[k % 3]) - len(MASK) for k in range(planted))
