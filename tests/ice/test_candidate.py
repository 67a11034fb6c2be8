"""Tests of :mod:`aioice.ice.candidate`: SDP round trips, priorities, foundations, pairing.

The expected strings of the "upstream parity" tests were derived by reading the code of
aioice 0.13's ``aioice.candidate`` (its ``to_sdp`` and ``candidate_foundation``), not by
importing it: it shares our import name.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import pytest
from aioice.ice import candidate as candidate_module
from aioice.ice.candidate import (
    TYPE_PREFERENCES,
    Candidate,
    CandidateParseError,
    candidate_foundation,
    candidate_pair_priority,
    candidate_priority,
    local_preference,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# -- real-world lines ---------------------------------------------------------------------

CHROME = [
    # host UDP IPv4 and IPv6, with Chrome's extensions
    "1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 ufrag zNbD "
    "network-id 1 network-cost 10",
    "2591843487 1 udp 2122197247 2a01:e34:ec1d:d3b0:b8b0:2f5e:8f2b:b2a5 57236 typ host "
    "generation 0 ufrag zNbD network-id 2 network-cost 10",
    # component 2 (RTCP, without rtcp-mux)
    "1467250027 2 udp 2122260222 192.168.0.196 46244 typ host generation 0 ufrag zNbD "
    "network-id 1 network-cost 10",
    # srflx, relay
    "842163049 1 udp 1686052607 203.0.113.7 46243 typ srflx raddr 192.168.0.196 rport 46243 "
    "generation 0 ufrag zNbD network-id 1 network-cost 10",
    "3745768287 1 udp 41885439 198.51.100.20 59642 typ relay raddr 203.0.113.7 rport 46243 "
    "generation 0 ufrag zNbD network-id 1 network-cost 10",
    # TCP active (port 9, the discard port) and passive
    "1191505551 1 tcp 1518280447 192.168.0.196 9 typ host tcptype active generation 0 "
    "ufrag zNbD network-id 1 network-cost 10",
    "1191505551 1 tcp 1518280447 192.168.0.196 50124 typ host tcptype passive generation 0",
    # mDNS host candidate, and the srflx that hides the host address
    "3028962476 1 udp 2113937151 a3b07d8c-5a1f-4c8e-9a3e-0d2c7f4b1e6a.local 54321 typ host "
    "generation 0 ufrag zNbD network-cost 999",
    "842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx raddr 0.0.0.0 rport 0 "
    "generation 0 ufrag zNbD network-cost 999",
]

FIREFOX = [
    "0 1 UDP 2122252543 192.168.1.37 55245 typ host",
    "1 1 UDP 2122187007 2001:db8::1 60421 typ host",
    "2 1 UDP 1686052863 203.0.113.9 55245 typ srflx raddr 192.168.1.37 rport 55245",
    "5 1 UDP 8331263 198.51.100.30 51234 typ relay raddr 198.51.100.30 rport 51234",
    "3 1 TCP 2105524479 192.168.1.37 9 typ host tcptype active",
    "4 1 TCP 2105458943 192.168.1.37 49999 typ host tcptype passive",
    "6 1 UDP 2122252543 0f4b1a2c-7d3e-4c5b-8a9f-1e2d3c4b5a6f.local 55246 typ host",
]

LIBNICE = [
    "1 1 UDP 2013266431 192.168.1.10 45678 typ host",
    "2 1 UDP 2013266430 fe80::a00:27ff:fe4e:66a1 45679 typ host",
    "7 1 TCP 1019216383 192.168.1.10 46000 typ host tcptype so",
    "9 1 UDP 1862270975 203.0.113.40 40000 typ prflx raddr 192.168.1.10 rport 45678",
]

AIOICE = [
    "423575c52a898925419c4fb6eade8462 1 udp 2130706431 192.168.1.10 55000 typ host",
    "bf40f675bbf91b2a49027dade2654183 1 udp 1694498815 203.0.113.5 55000 typ srflx "
    "raddr 192.168.1.10 rport 55000",
    "0facc74980dc51e817c76734f4c5a4d7 1 udp 16777215 198.51.100.2 61000 typ relay "
    "raddr 203.0.113.5 rport 55000",
    "365cbcb59afe9901aaa0f5cc9c9b5eea 2 udp 2130706430 ::1 55001 typ host",
]

REAL_WORLD = CHROME + FIREFOX + LIBNICE + AIOICE


@pytest.mark.parametrize("line", REAL_WORLD)
def test_round_trip_is_exact(line: str) -> None:
    assert Candidate.from_sdp(line).to_sdp() == line


@pytest.mark.parametrize("line", REAL_WORLD)
def test_round_trip_with_attribute_prefix(line: str) -> None:
    assert Candidate.from_sdp("candidate:" + line).to_sdp() == line
    assert Candidate.from_sdp("a=candidate:" + line + "\r\n").to_sdp() == line
    assert Candidate.from_sdp("Candidate:" + line).to_sdp() == line


def test_repr() -> None:
    candidate = Candidate.from_sdp(FIREFOX[0])
    assert repr(candidate) == "Candidate(0 1 UDP 2122252543 192.168.1.37 55245 typ host)"


def test_parse_fields_chrome_srflx() -> None:
    candidate = Candidate.from_sdp("candidate:" + CHROME[3])
    assert candidate.foundation == "842163049"
    assert candidate.component == 1
    assert candidate.transport == "udp"
    assert candidate.priority == 1686052607
    assert candidate.host == "203.0.113.7"
    assert candidate.port == 46243
    assert candidate.type == "srflx"
    assert candidate.related_address == "192.168.0.196"
    assert candidate.related_port == 46243
    assert candidate.tcptype is None
    assert candidate.generation == 0
    assert candidate.extensions == (("ufrag", "zNbD"), ("network-id", "1"), ("network-cost", "10"))
    assert candidate.extension("network-cost") == "10"
    assert candidate.extension("network-type") is None


def test_parse_fields_firefox_tcp() -> None:
    candidate = Candidate.from_sdp(FIREFOX[4])
    assert candidate.foundation == "3"
    assert candidate.transport == "TCP"  # the case is kept
    assert candidate.port == 9
    assert candidate.tcptype == "active"
    assert candidate.related_address is None
    assert candidate.related_port is None
    assert candidate.generation is None
    assert candidate.extensions == ()


def test_parse_mdns_host() -> None:
    candidate = Candidate.from_sdp(CHROME[7])
    assert candidate.host == "a3b07d8c-5a1f-4c8e-9a3e-0d2c7f4b1e6a.local"
    assert candidate.network_host == candidate.host
    assert candidate.extensions == (("ufrag", "zNbD"), ("network-cost", "999"))


def test_parse_upstream_docstring_example() -> None:
    candidate = Candidate.from_sdp("6815297761 1 udp 659136 1.2.3.4 31102 typ host generation 0")
    assert (candidate.foundation, candidate.priority, candidate.generation) == (
        "6815297761",
        659136,
        0,
    )


def test_parse_attributes_in_any_order() -> None:
    line = "1 1 udp 5 10.0.0.1 7 typ srflx ufrag abcd generation 3 rport 8 raddr 10.0.0.2"
    candidate = Candidate.from_sdp(line)
    assert candidate.related_address == "10.0.0.2"
    assert candidate.related_port == 8
    assert candidate.generation == 3
    # Written back in aioice 0.13's order, the extensions last.
    assert candidate.to_sdp() == (
        "1 1 udp 5 10.0.0.1 7 typ srflx raddr 10.0.0.2 rport 8 generation 3 ufrag abcd"
    )


def test_parse_keywords_case_insensitive() -> None:
    candidate = Candidate.from_sdp("1 1 UdP 5 10.0.0.1 7 TYP Host TCPTYPE Passive Generation 1")
    assert candidate.transport == "UdP"
    assert candidate.type == "host"
    assert candidate.tcptype == "passive"
    assert candidate.generation == 1
    assert candidate.to_sdp() == "1 1 UdP 5 10.0.0.1 7 typ host tcptype passive generation 1"


def test_parse_whitespace_and_leading_zeros() -> None:
    candidate = Candidate.from_sdp("  1\t1  udp 0005 10.0.0.1 07 typ host\n")
    assert (candidate.priority, candidate.port) == (5, 7)
    assert candidate.to_sdp() == "1 1 udp 5 10.0.0.1 7 typ host"


def test_parse_keeps_duplicate_extensions() -> None:
    line = "1 1 udp 5 10.0.0.1 7 typ host x-a 1 x-b 2 x-a 3"
    candidate = Candidate.from_sdp(line)
    assert candidate.extensions == (("x-a", "1"), ("x-b", "2"), ("x-a", "3"))
    assert candidate.extension("x-a") == "1"
    assert candidate.to_sdp() == line


def test_parse_limits() -> None:
    line = "+/Az09+/Az09+/Az09+/Az09+/Az09+/ 256 udp 4294967295 ::1 65535 typ relay rport 0"
    candidate = Candidate.from_sdp(line)
    assert candidate.foundation == "+/Az09+/Az09+/Az09+/Az09+/Az09+/"
    assert (candidate.component, candidate.priority, candidate.port) == (256, 0xFFFFFFFF, 65535)
    assert candidate.related_port == 0
    assert candidate.to_sdp() == line


# -- upstream parity: what aioice 0.13's to_sdp() produces ----------------------------------


def test_to_sdp_upstream_parity_all_fields() -> None:
    candidate = Candidate(
        foundation="abc",
        component=2,
        transport="tcp",
        priority=1,
        host="1.2.3.4",
        port=1234,
        type="srflx",
        related_address="10.0.0.1",
        related_port=4321,
        tcptype="passive",
        generation=0,
    )
    expected = "abc 2 tcp 1 1.2.3.4 1234 typ srflx raddr 10.0.0.1 rport 4321 tcptype passive "
    expected += "generation 0"
    assert candidate.to_sdp() == expected
    assert repr(candidate) == f"Candidate({expected})"


def test_to_sdp_upstream_parity_minimal() -> None:
    candidate = Candidate("f", 1, "udp", 2130706431, "192.168.1.10", 55000, "host")
    assert candidate.to_sdp() == "f 1 udp 2130706431 192.168.1.10 55000 typ host"
    assert candidate.extensions == ()


def test_to_sdp_upstream_parity_partial_related() -> None:
    # aioice 0.13 writes each optional field on its own, even rport without raddr.
    candidate = Candidate("f", 1, "UDP", 7, "::1", 9, "relay", related_port=5, generation=2)
    assert candidate.to_sdp() == "f 1 UDP 7 ::1 9 typ relay rport 5 generation 2"


def test_constructor_extensions() -> None:
    from_dict = Candidate("f", 1, "udp", 1, "::1", 9, "host", extensions={"ufrag": "abcd"})
    from_pairs = Candidate(
        "f", 1, "udp", 1, "::1", 9, "host", extensions=[("ufrag", "abcd"), ("network-id", "1")]
    )
    assert from_dict.extensions == (("ufrag", "abcd"),)
    assert from_dict.to_sdp() == "f 1 udp 1 ::1 9 typ host ufrag abcd"
    assert from_pairs.to_sdp() == "f 1 udp 1 ::1 9 typ host ufrag abcd network-id 1"


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        ({"": "x"}, "invalid extension attribute name ''"),
        ({"a b": "x"}, "invalid extension attribute name 'a b'"),
        ({"raddr": "x"}, "invalid extension attribute name 'raddr'"),
        ({"Generation": "1"}, "invalid extension attribute name 'Generation'"),
        ({"ufrag": ""}, "invalid value '' for extension attribute 'ufrag'"),
        ({"ufrag": "a b"}, "invalid value 'a b' for extension attribute 'ufrag'"),
    ],
)
def test_constructor_rejects_bad_extensions(extensions: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Candidate("f", 1, "udp", 1, "::1", 9, "host", extensions=extensions)


def test_identity_equality() -> None:
    # aioice 0.13 defines no __eq__: candidates compare and hash by identity.
    a = Candidate.from_sdp(FIREFOX[0])
    b = Candidate.from_sdp(FIREFOX[0])
    assert a == a
    assert a != b
    assert len({a, b}) == 2
    assert a.to_sdp() == b.to_sdp()


# -- errors -------------------------------------------------------------------------------

FIELDS_HINT = "<foundation> <component> <transport> <priority> <address> <port> typ <type>"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", f"candidate must have at least 8 fields, got 0: {FIELDS_HINT}"),
        ("candidate:", f"candidate must have at least 8 fields, got 0: {FIELDS_HINT}"),
        (
            "1 1 udp 5 10.0.0.1 7 typ",
            f"candidate must have at least 8 fields, got 7: {FIELDS_HINT}",
        ),
        (
            "1-2 1 udp 5 10.0.0.1 7 typ host",
            "invalid foundation '1-2': expected 1 to 32 of A-Z a-z 0-9 + /",
        ),
        (
            "candidate:candidate:1 1 udp 5 10.0.0.1 7 typ host",
            "invalid foundation 'candidate:1': expected 1 to 32 of A-Z a-z 0-9 + /",
        ),
        (
            "1 x udp 5 10.0.0.1 7 typ host",
            "invalid component 'x': expected an integer from 1 to 256",
        ),
        (
            "1 0 udp 5 10.0.0.1 7 typ host",
            "invalid component '0': expected an integer from 1 to 256",
        ),
        (
            "1 257 udp 5 10.0.0.1 7 typ host",
            "invalid component '257': expected an integer from 1 to 256",
        ),
        (
            "1 +1 udp 5 10.0.0.1 7 typ host",
            "invalid component '+1': expected an integer from 1 to 256",
        ),
        ("1 1 u(p 5 10.0.0.1 7 typ host", "invalid transport 'u(p'"),
        (
            "1 1 udp -5 10.0.0.1 7 typ host",
            "invalid priority '-5': expected an integer from 0 to 4294967295",
        ),
        (
            "1 1 udp 4294967296 10.0.0.1 7 typ host",
            "invalid priority '4294967296': expected an integer from 0 to 4294967295",
        ),
        (
            "1 1 udp 1_000 10.0.0.1 7 typ host",
            "invalid priority '1_000': expected an integer from 0 to 4294967295",
        ),
        (
            "1 1 udp \u0663 10.0.0.1 7 typ host",
            "invalid priority '\u0663': expected an integer from 0 to 4294967295",
        ),
        (
            "1 1 udp 5 10.0.0.\x01 7 typ host",
            "invalid address '10.0.0.\\x01': expected visible ASCII",
        ),
        (
            "1 1 udp 5 10.0.0.1 65536 typ host",
            "invalid port '65536': expected an integer from 0 to 65535",
        ),
        (
            "1 1 udp 5 10.0.0.1 port typ host",
            "invalid port 'port': expected an integer from 0 to 65535",
        ),
        ("1 1 udp 5 10.0.0.1 7 type host", "expected 'typ' after the port, got 'type'"),
        (
            "1 1 udp 5 10.0.0.1 7 typ local",
            "invalid candidate type 'local': expected host, srflx, prflx or relay",
        ),
        ("1 1 udp 5 10.0.0.1 7 typ host generation", "attribute 'generation' has no value"),
        (
            "1 1 udp 5 10.0.0.1 7 typ host ufrag abcd network-id",
            "attribute 'network-id' has no value",
        ),
        (
            "1 1 udp 5 10.0.0.1 7 typ srflx raddr 1.2.3.4 raddr 1.2.3.4",
            "duplicate attribute 'raddr'",
        ),
        ("1 1 udp 5 10.0.0.1 7 typ host typ host", "duplicate attribute 'typ'"),
        ("1 1 udp 5 10.0.0.1 7 typ srflx rport 1 RPORT 1", "duplicate attribute 'RPORT'"),
        (
            "1 1 udp 5 10.0.0.1 7 typ srflx raddr \x7f",
            "invalid raddr '\\x7f': expected visible ASCII",
        ),
        (
            "1 1 udp 5 10.0.0.1 7 typ srflx rport 70000",
            "invalid rport '70000': expected an integer from 0 to 65535",
        ),
        (
            "1 1 tcp 5 10.0.0.1 7 typ host tcptype simultaneous",
            "invalid tcptype 'simultaneous': expected active, passive or so",
        ),
        (
            "1 1 udp 5 10.0.0.1 7 typ host generation x",
            "invalid generation 'x': expected an integer from 0 to 4294967295",
        ),
        ("1 1 udp 5 10.0.0.1 7 typ host a:b 1", "invalid attribute name 'a:b'"),
        ("1 1 udp 5 10.0.0.1 7 typ host ufrag \x00", "invalid value '\\x00' for attribute 'ufrag'"),
    ],
)
def test_from_sdp_errors(line: str, message: str) -> None:
    with pytest.raises(CandidateParseError) as excinfo:
        Candidate.from_sdp(line)
    assert str(excinfo.value) == message
    assert isinstance(excinfo.value, ValueError)


# -- fuzzing: from_sdp raises nothing but CandidateParseError --------------------------------

INTERESTING_TOKENS = [
    "",
    "typ",
    "raddr",
    "rport",
    "tcptype",
    "generation",
    "host",
    "HOST",
    "relay",
    "so",
    "-1",
    "+1",
    "1_0",
    "\u0663",
    "0",
    "256",
    "65536",
    "4294967296",
    "99999999999999999999999",
    "candidate:",
    "a=candidate:",
    "\x00",
    "\u212a",
    "\u0130",
    "\u00e9",
    "::1",
    "x.local",
]


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    tokens = draw(st.sampled_from(REAL_WORLD)).split(" ")
    token = st.one_of(st.sampled_from(INTERESTING_TOKENS), st.text(max_size=6))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["delete", "replace", "insert", "duplicate", "swap", "char"]))
        i = draw(st.integers(min_value=0, max_value=max(len(tokens) - 1, 0)))
        if not tokens:
            tokens.append(draw(token))
        elif op == "delete":
            del tokens[i]
        elif op == "replace":
            tokens[i] = draw(token)
        elif op == "insert":
            tokens.insert(i, draw(token))
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = draw(st.integers(min_value=0, max_value=len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            word = tokens[i]
            k = draw(st.integers(min_value=0, max_value=len(word)))
            tokens[i] = word[:k] + draw(st.characters()) + word[k + 1 :]
    separator = draw(st.sampled_from([" ", "  ", "\t", " \x1c "]))
    return draw(st.sampled_from(["", "candidate:", "a=candidate:"])) + separator.join(tokens)


def check_parse(line: str) -> None:
    try:
        candidate = Candidate.from_sdp(line)
    except CandidateParseError:
        return
    # What is accepted is written back in a form that parses to the same line.
    sdp = candidate.to_sdp()
    assert Candidate.from_sdp(sdp).to_sdp() == sdp


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(st.text())
def test_fuzz_random_text(line: str) -> None:
    check_parse(line)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(mutated_lines())
def test_fuzz_mutated_lines(line: str) -> None:
    check_parse(line)


ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
TOKEN_CHARS = "!#$%&'*+-.^_`{|}~" + ICE_CHARS.replace("/", "")


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    ports = st.integers(min_value=0, max_value=65535)
    known = {"typ", "raddr", "rport", "tcptype", "generation"}
    names = st.text(TOKEN_CHARS, min_size=1, max_size=8).filter(lambda s: s.lower() not in known)
    values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8)
    return Candidate(
        foundation=draw(st.text(ICE_CHARS, min_size=1, max_size=32)),
        component=draw(st.integers(min_value=1, max_value=256)),
        transport=draw(st.sampled_from(["udp", "UDP", "tcp", "TCP"])),
        priority=draw(st.integers(min_value=0, max_value=0xFFFFFFFF)),
        host=draw(st.sampled_from(["10.0.0.1", "::1", "2001:db8::7", "abcd.local"])),
        port=draw(ports),
        type=draw(st.sampled_from(sorted(TYPE_PREFERENCES))),
        related_address=draw(st.none() | st.sampled_from(["0.0.0.0", "192.168.1.1", "fe80::1"])),
        related_port=draw(st.none() | ports),
        tcptype=draw(st.none() | st.sampled_from(["active", "passive", "so"])),
        generation=draw(st.none() | st.integers(min_value=0, max_value=0xFFFFFFFF)),
        extensions=draw(st.lists(st.tuples(names, values), max_size=4)),
    )


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(candidates())
def test_property_round_trip(candidate: Candidate) -> None:
    sdp = candidate.to_sdp()
    parsed = Candidate.from_sdp(sdp)
    assert parsed.to_sdp() == sdp
    assert vars(parsed) == vars(candidate)


# -- priorities ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "candidate_type", "local_pref", "expected"),
    [
        (1, "host", 65535, 2130706431),
        (1, "prflx", 65535, 1862270975),
        (1, "srflx", 65535, 1694498815),
        (1, "relay", 65535, 16777215),
        (2, "host", 65535, 2130706430),
        (2, "srflx", 65535, 1694498814),
        (2, "relay", 65535, 16777214),
        (1, "host", 0, 2113929471),
        (256, "relay", 0, 0),
    ],
)
def test_candidate_priority(
    component: int, candidate_type: str, local_pref: int, expected: int
) -> None:
    assert candidate_priority(component, candidate_type, local_pref) == expected


def test_candidate_priority_default_local_pref() -> None:
    assert candidate_priority(1, "host") == 2130706431
    assert candidate_priority(candidate_component=2, candidate_type="srflx") == 1694498814


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, "relayed", 65535), "unknown candidate type 'relayed'"),
        ((0, "host", 65535), "component must be from 1 to 256, got 0"),
        ((257, "host", 65535), "component must be from 1 to 256, got 257"),
        ((1, "host", 65536), "local preference must be from 0 to 65535, got 65536"),
        ((1, "host", -1), "local preference must be from 0 to 65535, got -1"),
    ],
)
def test_candidate_priority_errors(args: tuple[int, str, int], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        candidate_priority(*args)


def test_local_preference() -> None:
    assert local_preference("2001:db8::1") == 65535
    assert local_preference("192.168.1.10") == 65534
    assert local_preference("2001:db8::2", index=1) == 65533
    assert local_preference("10.0.0.1", index=1) == 65532
    assert local_preference("fe80::1%eth0", index=2) == 65531
    assert local_preference("10.0.0.1", index=32767) == 0
    values = {
        local_preference(address, index=i)
        for i in range(100)
        for address in ("10.0.0.1", "2001:db8::1")
    }
    assert len(values) == 200
    assert max(values) == 65535
    # Usable as candidate_priority's local preference.
    assert candidate_priority(1, "host", local_preference("192.168.1.10")) == 2130706175


@pytest.mark.parametrize(
    ("address", "index", "message"),
    [
        ("10.0.0.1", -1, "index must be from 0 to 32767, got -1"),
        ("10.0.0.1", 32768, "index must be from 0 to 32767, got 32768"),
        ("x.local", 0, "'x.local' does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_local_preference_errors(address: str, index: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        local_preference(address, index=index)


def make(priority: int, host: str = "10.0.0.1", component: int = 1) -> Candidate:
    return Candidate("1", component, "udp", priority, host, 9, "host")


def test_candidate_pair_priority_worked_example() -> None:
    host = make(2130706431)  # host, component 1
    srflx = make(1694498815)  # srflx, component 1
    # We control with the host candidate: G = 2130706431, D = 1694498815.
    # 2**32 * 1694498815 + 2 * 2130706431 + 1
    assert candidate_pair_priority(host, srflx, ice_controlling=True) == 7277816997797167103
    # We are controlled with the host candidate: G = 1694498815, D = 2130706431, no +1.
    assert candidate_pair_priority(host, srflx, ice_controlling=False) == 7277816997797167102
    # Equal priorities: 2**32 * G + 2 * G.
    assert candidate_pair_priority(host, make(2130706431), True) == 9151314442783293438


def test_candidate_pair_priority_is_the_same_for_both_agents() -> None:
    for g, d in [(2130706431, 1694498815), (16777215, 2130706430), (5, 5), (0, 1)]:
        controlling_view = candidate_pair_priority(make(g), make(d), ice_controlling=True)
        controlled_view = candidate_pair_priority(make(d), make(g), ice_controlling=False)
        assert controlling_view == controlled_view
        assert controlling_view == (1 << 32) * min(g, d) + 2 * max(g, d) + (1 if g > d else 0)


def test_candidate_pair_priority_zero_priority() -> None:
    # aioice 0.13's "ice_controlling and local.priority or remote.priority" fell through on 0.
    assert candidate_pair_priority(make(0), make(7), ice_controlling=True) == 14
    assert candidate_pair_priority(make(7), make(0), ice_controlling=True) == 15


# -- foundations --------------------------------------------------------------------------


def test_candidate_foundation_upstream_format() -> None:
    # aioice 0.13: md5("type|transport|base").hexdigest()
    assert candidate_foundation("host", "udp", "192.168.1.10") == "423575c52a898925419c4fb6eade8462"
    assert candidate_foundation("srflx", "udp", "192.168.1.10") == (
        "bf40f675bbf91b2a49027dade2654183"
    )
    assert candidate_foundation("relay", "udp", "192.168.1.10") == (
        hashlib.md5(b"relay|udp|192.168.1.10").hexdigest()
    )
    assert candidate_foundation("host", "udp", "::1") == "365cbcb59afe9901aaa0f5cc9c9b5eea"


def test_candidate_foundation_equality() -> None:
    f = candidate_foundation
    # Same type, base and transport: same foundation (the port is not part of the key).
    assert f("host", "udp", "192.168.1.10") == f("host", "udp", "192.168.1.10")
    # Transport and type are case-insensitive; IP literals are compared canonically.
    assert f("host", "UDP", "192.168.1.10") == f("host", "udp", "192.168.1.10")
    assert f("HOST", "udp", "192.168.1.10") == f("host", "udp", "192.168.1.10")
    assert f("host", "udp", "2001:DB8:0::1") == f("host", "udp", "2001:db8::1")
    # Any difference gives a different foundation.
    assert f("host", "udp", "192.168.1.10") != f("srflx", "udp", "192.168.1.10")
    assert f("host", "udp", "192.168.1.10") != f("host", "tcp", "192.168.1.10")
    assert f("host", "udp", "192.168.1.10") != f("host", "udp", "192.168.1.11")
    assert f("relay", "udp", "10.0.0.1") != f("relay", "udp", "10.0.0.1", server="203.0.113.1")


def test_candidate_foundation_server() -> None:
    f = candidate_foundation
    a = f("srflx", "udp", "192.168.1.10", server="203.0.113.1")
    assert a == "82e84e17688fa8325a921834cee1d212"
    assert a == f("srflx", "udp", "192.168.1.10", server="203.0.113.1")
    assert a != f("srflx", "udp", "192.168.1.10", server="203.0.113.2")
    assert f("relay", "udp", "::1", server="2001:db8::5") == f(
        "relay", "udp", "::1", server="2001:DB8:0:0::5"
    )


def test_candidate_foundation_is_a_valid_foundation() -> None:
    foundation = candidate_foundation("host", "udp", "\u00e9t\u00e9.local")
    candidate = Candidate(foundation, 1, "udp", 1, "10.0.0.1", 9, "host")
    assert Candidate.from_sdp(candidate.to_sdp()).foundation == foundation
    assert len(foundation) == 32


# -- pairing ------------------------------------------------------------------------------


def cand(
    host: str,
    component: int = 1,
    transport: str = "udp",
    tcptype: str | None = None,
) -> Candidate:
    return Candidate("1", component, transport, 1, host, 9, "host", tcptype=tcptype)


def test_can_pair_with_family_and_component() -> None:
    assert cand("10.0.0.1").can_pair_with(cand("192.168.1.1"))
    assert cand("::1").can_pair_with(cand("2001:db8::1"))
    assert not cand("10.0.0.1").can_pair_with(cand("2001:db8::1"))
    assert not cand("::1").can_pair_with(cand("10.0.0.1"))
    assert not cand("10.0.0.1", component=1).can_pair_with(cand("10.0.0.2", component=2))
    assert cand("fe80::1%eth0").can_pair_with(cand("fe80::2"))


def test_can_pair_with_transport() -> None:
    assert cand("10.0.0.1", transport="udp").can_pair_with(cand("10.0.0.2", transport="UDP"))
    assert not cand("10.0.0.1", transport="udp").can_pair_with(cand("10.0.0.2", transport="tcp"))


def test_can_pair_with_mdns() -> None:
    local = cand("10.0.0.1")
    remote = cand("0f4b1a2c-7d3e-4c5b-8a9f-1e2d3c4b5a6f.local")
    # Not resolved: there is no address to send checks to.
    assert not local.can_pair_with(remote)
    assert not remote.can_pair_with(local)
    # Resolved to an IPv4 address: pairs with IPv4 only; host and to_sdp keep the name.
    remote.network_host = "10.0.0.2"
    assert remote.network_host == "10.0.0.2"
    assert local.can_pair_with(remote)
    assert not cand("::1").can_pair_with(remote)
    assert remote.host.endswith(".local")
    assert "10.0.0.2" not in remote.to_sdp()


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        ("active", "passive", True),
        ("passive", "active", True),
        ("so", "so", True),
        ("active", "active", False),
        ("passive", "passive", False),
        ("active", "so", False),
        ("so", "passive", False),
        (None, "active", True),
        ("passive", None, True),
    ],
)
def test_can_pair_with_tcptype(local: str | None, remote: str | None, expected: bool) -> None:
    a = cand("10.0.0.1", transport="tcp", tcptype=local)
    b = cand("10.0.0.2", transport="TCP", tcptype=remote)
    assert a.can_pair_with(b) is expected


def test_can_pair_with_parsed_lines() -> None:
    chrome_active = Candidate.from_sdp(CHROME[5])
    firefox_passive = Candidate.from_sdp(FIREFOX[5])
    assert chrome_active.can_pair_with(firefox_passive)
    assert not chrome_active.can_pair_with(Candidate.from_sdp(FIREFOX[4]))
    assert Candidate.from_sdp(CHROME[0]).can_pair_with(Candidate.from_sdp(FIREFOX[0]))
    assert not Candidate.from_sdp(CHROME[0]).can_pair_with(Candidate.from_sdp(FIREFOX[1]))


# -- the module is a sans-I/O core --------------------------------------------------------


def test_module_imports_no_io() -> None:
    source = Path(candidate_module.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"asyncio", "socket", "time", "random", "secrets", "os"})
