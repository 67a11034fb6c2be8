"""STUN codec benchmark: a stdlib floor, our ``aioice.stun`` and upstream aioice 0.13.0.

Run it with ``hatch run bench:stun [--quick] [--json PATH]`` from the repository root.

Three implementations are timed on the same four operations, each in its own subprocess with
the same timing method:

``floor``
    The same bytes made only of ``struct`` (precompiled), ``hmac.digest`` and ``zlib.crc32``
    (plus one ``socket.inet_pton`` for the XOR-MAPPED-ADDRESS). Nothing can reasonably be
    faster in pure Python, so ``floor/impl`` says how close an implementation gets to it.
``ours``
    ``aioice.stun`` from ``packages/stun/src`` (the ``bench`` hatch environment installs it).
``upstream``
    aioice 0.13.0 from PyPI. It shares the import name ``aioice``, so it only ever runs in
    ``bench/.upstream-venv`` (created once, then reused), under ``python -I`` and a cleaned
    environment; the child checks that none of ``packages/*/src`` is on its ``sys.path``.

Every implementation must produce exactly the floor's bytes, and must accept them on decode
(``check_message_integrity(key)`` is True), before anything is timed.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hmac
import importlib.metadata
import io
import json
import platform
import pstats
import socket
import struct
import subprocess
import sys
import timeit
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

# The bench helpers sit beside this script; children run as ``python -I``, which leaves
# the script's folder off sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream_venv import (
    check_upstream_child,
    clean_env,
    ensure_upstream_venv,
    is_within,
    our_src_dirs,
    resolved_sys_path,
)

SCRIPT: Final = Path(__file__).resolve()

IMPLS: Final = ("floor", "ours", "upstream")
OPS: Final = (
    "encode_request",
    "encode_response",
    "encode_request_onestep",
    "encode_response_onestep",
    "decode_request",
    "decode_response",
)
OP_LABELS: Final = {
    "encode_request": "encode request",
    "encode_response": "encode response",
    "encode_request_onestep": "  one-step req",
    "encode_response_onestep": "  one-step resp",
    "decode_request": "decode request",
    "decode_response": "decode response",
}
#: The encodings each workload must reproduce byte for byte before it is timed.
ENCODE_OPS: Final = (
    "encode_request",
    "encode_response",
    "encode_request_onestep",
    "encode_response_onestep",
)

# --- The workload: an ICE connectivity check and its success response. ----------------------

# The transaction id and the 22-character ICE password of RFC 5769's sample request.
TRANSACTION_ID: Final = bytes.fromhex("b7e7a701bc34d686fa87dfae")
KEY: Final = b"VOkJxbRl1RmTxUk/WvJxBt"
USERNAME: Final = "abcd:efgh"
PRIORITY: Final = 0x6E0001FF
TIEBREAKER: Final = 0x932FF9B151263B36
MAPPED_ADDRESS: Final = ("192.0.2.1", 32853)

# What aioice 0.13.0 makes of them, so the floor is checked even when upstream is skipped.
EXPECTED_REQUEST: Final = bytes.fromhex(
    "000100482112a442b7e7a701bc34d686fa87dfae00060009616263643a65666768000000002400046e"
    "0001ff802a0008932ff9b151263b360025000000080014b170f779ce1c244804f2807b6eb8083ec94b"
    "e76d80280004bcde2a5d"
)
EXPECTED_RESPONSE: Final = bytes.fromhex(
    "0101002c2112a442b7e7a701bc34d686fa87dfae002000080001a147e112a6430008001474c9371ebf"
    "3148548518699c3e3174c20dd9e68a80280004fae4043a"
)

# --- STUN constants (RFC 8489). ---------------------------------------------------------------

COOKIE: Final = 0x2112A442
FINGERPRINT_XOR: Final = 0x5354554E
HEADER_LENGTH: Final = 20
INTEGRITY_TLV_LENGTH: Final = 24  # 4-byte TLV header + 20-byte HMAC-SHA1
FINGERPRINT_TLV_LENGTH: Final = 8  # 4-byte TLV header + CRC-32
BINDING_REQUEST: Final = 0x0001
BINDING_SUCCESS: Final = 0x0101
ATTR_USERNAME: Final = 0x0006
ATTR_MESSAGE_INTEGRITY: Final = 0x0008
ATTR_XOR_MAPPED_ADDRESS: Final = 0x0020
ATTR_PRIORITY: Final = 0x0024
ATTR_USE_CANDIDATE: Final = 0x0025
ATTR_FINGERPRINT: Final = 0x8028
ATTR_ICE_CONTROLLING: Final = 0x802A
FAMILY_IPV4: Final = 0x01

Workload = dict[str, Callable[[], object]]


# --- Floor: struct + hmac.digest + zlib.crc32 only. -------------------------------------------


def floor_workload(request_data: bytes, response_data: bytes) -> Workload:
    """The four operations made only of struct, hmac.digest and zlib.crc32.

    The encoders are specialised to the message layout (one precompiled ``struct.Struct`` for
    the header and the attribute TLVs, USERNAME padded by its ``12s`` field), but take the same
    Python values as the codecs: ``str`` username, ``int`` priority and tie-breaker, and a
    ``(host, port)`` tuple. The decoders walk the TLV headers, check FINGERPRINT and
    MESSAGE-INTEGRITY, and decode no attribute value.
    """
    digest = hmac.digest
    compare_digest = hmac.compare_digest
    crc32 = zlib.crc32
    inet_pton = socket.inet_pton
    af_inet = socket.AF_INET

    request_struct = struct.Struct(
        "!HHI12s"  # header
        "HH12s"  # USERNAME, padded to 12 bytes
        "HHI"  # PRIORITY
        "HHQ"  # ICE-CONTROLLING
        "HH"  # USE-CANDIDATE
    )
    response_struct = struct.Struct(
        "!HHI12s"  # header
        "HHBBHI"  # XOR-MAPPED-ADDRESS (IPv4)
    )
    u16 = struct.Struct("!H")
    u32 = struct.Struct("!I")
    tlv = struct.Struct("!HH")
    header = struct.Struct("!HHI12s")
    fingerprint_tlv = struct.Struct("!HHI")
    integrity_header = tlv.pack(ATTR_MESSAGE_INTEGRITY, 20)

    # Header lengths: as MESSAGE-INTEGRITY sees it, then the final one with FINGERPRINT.
    request_mi_length = request_struct.size - HEADER_LENGTH + INTEGRITY_TLV_LENGTH
    request_final_length = u16.pack(request_mi_length + FINGERPRINT_TLV_LENGTH)
    response_mi_length = response_struct.size - HEADER_LENGTH + INTEGRITY_TLV_LENGTH
    response_final_length = u16.pack(response_mi_length + FINGERPRINT_TLV_LENGTH)

    transaction_id = TRANSACTION_ID
    key = KEY
    username = USERNAME
    priority = PRIORITY
    tiebreaker = TIEBREAKER
    mapped_address = MAPPED_ADDRESS

    def encode_request() -> bytes:
        user = username.encode()
        head = request_struct.pack(
            BINDING_REQUEST, request_mi_length, COOKIE, transaction_id,
            ATTR_USERNAME, len(user), user,
            ATTR_PRIORITY, 4, priority,
            ATTR_ICE_CONTROLLING, 8, tiebreaker,
            ATTR_USE_CANDIDATE, 0,
        )  # fmt: skip
        mac = digest(key, head, "sha1")
        data = head[:2] + request_final_length + head[4:] + integrity_header + mac
        return data + fingerprint_tlv.pack(ATTR_FINGERPRINT, 4, crc32(data) ^ FINGERPRINT_XOR)

    def encode_response() -> bytes:
        host, port = mapped_address
        (address,) = u32.unpack(inet_pton(af_inet, host))
        head = response_struct.pack(
            BINDING_SUCCESS, response_mi_length, COOKIE, transaction_id,
            ATTR_XOR_MAPPED_ADDRESS, 8, 0, FAMILY_IPV4, port ^ (COOKIE >> 16), address ^ COOKIE,
        )  # fmt: skip
        mac = digest(key, head, "sha1")
        data = head[:2] + response_final_length + head[4:] + integrity_header + mac
        return data + fingerprint_tlv.pack(ATTR_FINGERPRINT, 4, crc32(data) ^ FINGERPRINT_XOR)

    def decode(data: bytes) -> bool:
        _message_type, length, cookie, _transaction_id = header.unpack_from(data)
        end = len(data)
        if end != HEADER_LENGTH + length or cookie != COOKIE:
            raise ValueError("not a STUN message")
        integrity = -1
        pos = HEADER_LENGTH
        while pos + 4 <= end:
            attr_type, attr_length = tlv.unpack_from(data, pos)
            if attr_type == ATTR_MESSAGE_INTEGRITY:
                integrity = pos
            elif attr_type == ATTR_FINGERPRINT:
                # FINGERPRINT is last, so the header already has the length it covers.
                if pos + FINGERPRINT_TLV_LENGTH != end:
                    raise ValueError("FINGERPRINT is not the last attribute")
                if crc32(data[:pos]) ^ FINGERPRINT_XOR != u32.unpack_from(data, pos + 4)[0]:
                    raise ValueError("STUN message fingerprint does not match")
            pos += 4 + ((attr_length + 3) & ~3)
        if integrity < 0:
            return False
        covered = (
            data[:2]
            + u16.pack(integrity - HEADER_LENGTH + INTEGRITY_TLV_LENGTH)
            + data[4:integrity]
        )
        return compare_digest(
            digest(key, covered, "sha1"), data[integrity + 4 : integrity + INTEGRITY_TLV_LENGTH]
        )

    def decode_request() -> bool:
        return decode(request_data)

    def decode_response() -> bool:
        return decode(response_data)

    return {
        "encode_request": encode_request,
        "encode_response": encode_response,
        "encode_request_onestep": encode_request,
        "encode_response_onestep": encode_response,
        "decode_request": decode_request,
        "decode_response": decode_response,
    }


def reference_messages() -> tuple[bytes, bytes]:
    """The floor's request and response: the bytes every implementation must produce."""
    encoders = floor_workload(b"", b"")
    request = encoders["encode_request"]()
    response = encoders["encode_response"]()
    assert request == EXPECTED_REQUEST, request
    assert response == EXPECTED_RESPONSE, response
    return EXPECTED_REQUEST, EXPECTED_RESPONSE


# --- Ours and upstream: the aioice.stun API. --------------------------------------------------


def codec_workload(request_data: bytes, response_data: bytes) -> Workload:
    """The four operations through ``aioice.stun``, whichever one is importable.

    This is typed against our package; at run time the upstream child imports upstream's
    ``aioice.stun`` module under the same name, with the same API.
    """
    from aioice.stun import Class, Message, Method, parse_message

    transaction_id = TRANSACTION_ID
    key = KEY
    username = USERNAME
    priority = PRIORITY
    tiebreaker = TIEBREAKER
    mapped_address = MAPPED_ADDRESS

    def encode_request() -> bytes:
        message = Message(
            message_method=Method.BINDING,
            message_class=Class.REQUEST,
            transaction_id=transaction_id,
            attributes={
                "USERNAME": username,
                "PRIORITY": priority,
                "ICE-CONTROLLING": tiebreaker,
                "USE-CANDIDATE": None,
            },
        )
        # aioice 0.x's add_message_integrity() adds FINGERPRINT too (ours as well).
        message.add_message_integrity(key)
        return bytes(message)

    def encode_response() -> bytes:
        message = Message(
            message_method=Method.BINDING,
            message_class=Class.RESPONSE,
            transaction_id=transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": mapped_address},
        )
        message.add_message_integrity(key)
        return bytes(message)

    # One step: ours has Message.encode(key), the encoder for hot paths; upstream has
    # nothing of the kind, so its "one-step" rows repeat its only way.
    encode_request_onestep = encode_request
    encode_response_onestep = encode_response
    if hasattr(Message, "encode"):

        def encode_request_onestep() -> bytes:
            return Message(
                Method.BINDING,
                Class.REQUEST,
                transaction_id,
                {
                    "USERNAME": username,
                    "PRIORITY": priority,
                    "ICE-CONTROLLING": tiebreaker,
                    "USE-CANDIDATE": None,
                },
            ).encode(key)

        def encode_response_onestep() -> bytes:
            return Message(
                Method.BINDING,
                Class.RESPONSE,
                transaction_id,
                {"XOR-MAPPED-ADDRESS": mapped_address},
            ).encode(key)

    def decode_request() -> bool:
        return parse_message(request_data).check_message_integrity(key)

    def decode_response() -> bool:
        return parse_message(response_data).check_message_integrity(key)

    # Beyond the integrity check: the decoded values are the ones encoded.
    request = parse_message(request_data)
    expected_request = {
        "USERNAME": USERNAME,
        "PRIORITY": PRIORITY,
        "ICE-CONTROLLING": TIEBREAKER,
        "USE-CANDIDATE": None,
    }
    for name, value in expected_request.items():
        assert request.attributes[name] == value, (name, request.attributes[name], value)
    response = parse_message(response_data)
    address = response.attributes["XOR-MAPPED-ADDRESS"]
    assert tuple(address) == MAPPED_ADDRESS, address

    return {
        "encode_request": encode_request,
        "encode_response": encode_response,
        "encode_request_onestep": encode_request_onestep,
        "encode_response_onestep": encode_response_onestep,
        "decode_request": decode_request,
        "decode_response": decode_response,
    }


# --- Isolation checks (which aioice.stun did we get?). ----------------------------------------


def describe_codec(impl: str) -> dict[str, str]:
    """Import ``aioice.stun`` and check that it is the implementation ``impl`` asks for."""
    if impl == "floor":
        return {"module": "struct + hmac.digest + zlib.crc32", "version": platform.python_version()}

    src_dirs = our_src_dirs()
    if impl == "upstream":
        leaked = [str(path) for path in resolved_sys_path() if path in src_dirs]
        if leaked:
            raise RuntimeError(f"the upstream child sees our sources on sys.path: {leaked}")

    import aioice.stun

    module_file = Path(aioice.stun.__file__ or "").resolve()
    ours = any(is_within(module_file, src) for src in src_dirs)
    if impl == "ours":
        if not ours:
            raise RuntimeError(f"aioice.stun comes from {module_file}, not packages/stun/src")
        try:
            version = importlib.metadata.version("aioice-stun")
        except importlib.metadata.PackageNotFoundError:
            version = aioice.stun.__version__
    else:
        version = check_upstream_child("aioice.stun", module_file, ours)
    if module_file.name == "__init__.py":
        module_file = module_file.parent
    return {"module": str(module_file), "version": version}


# --- Timing. ----------------------------------------------------------------------------------


def autorange(timer: timeit.Timer, min_time: float) -> int:
    """The smallest loop count in 1, 2, 5, 10, 20, 50, ... taking at least ``min_time``."""
    base = 1
    while True:
        for factor in (1, 2, 5):
            number = base * factor
            if timer.timeit(number) >= min_time:
                return number
        base *= 10


def measure(func: Callable[[], object], repeat: int, min_time: float) -> dict[str, Any]:
    """Best of ``repeat`` runs of an auto-ranged number of loops, in ns per call."""
    timer = timeit.Timer(func)
    number = autorange(timer, min_time)
    runs = timer.repeat(repeat=repeat, number=number)
    return {
        "ns_per_op": min(runs) / number * 1e9,
        "loops": number,
        "runs_ns_per_op": [run / number * 1e9 for run in runs],
    }


def nothing() -> None:
    return None


def build_workload(impl: str) -> tuple[Workload, dict[str, str]]:
    """Check the implementation against the floor's bytes, and return its operations."""
    request_data, response_data = reference_messages()
    info = describe_codec(impl)
    if impl == "floor":
        workload = floor_workload(request_data, response_data)
    else:
        workload = codec_workload(request_data, response_data)

    expected = {op: request_data if "request" in op else response_data for op in ENCODE_OPS}
    for op, data in expected.items():
        produced = workload[op]()
        if produced != data:
            raise AssertionError(
                f"{impl} {op} differs from the floor's bytes:\n"
                f"  {impl}: {produced!r}\n  floor: {data!r}"
            )
    for op in ("decode_request", "decode_response"):
        if workload[op]() is not True:
            raise AssertionError(f"{impl} {op}: check_message_integrity(key) is not True")
    # And the floor's decoder accepts what the floor's encoder made (hence what impl made).
    floor = floor_workload(request_data, response_data)
    assert floor["decode_request"]() is True
    assert floor["decode_response"]() is True
    return workload, info


def run_child(impl: str, repeat: int, min_time: float) -> dict[str, Any]:
    workload, info = build_workload(impl)
    request_data = reference_messages()[0]
    encoded: dict[str, str] = {}
    for op in ENCODE_OPS:
        produced = workload[op]()
        assert isinstance(produced, bytes)
        encoded[op] = produced.hex()
    results = {op: measure(workload[op], repeat, min_time) for op in OPS}
    overhead = measure(nothing, repeat, min_time)["ns_per_op"]
    primitives: dict[str, float] = {}
    if impl == "floor":
        # What the floor's primitives cost alone, on the request's bytes.
        covered = request_data[: -INTEGRITY_TLV_LENGTH - FINGERPRINT_TLV_LENGTH]
        signed = request_data[:-FINGERPRINT_TLV_LENGTH]
        key = KEY

        def hmac_digest() -> bytes:
            return hmac.digest(key, covered, "sha1")

        def crc32() -> int:
            return zlib.crc32(signed)

        for name, func in (("hmac.digest", hmac_digest), ("zlib.crc32", crc32)):
            primitives[name] = measure(func, repeat, min_time)["ns_per_op"]
    return {
        "impl": impl,
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "base_prefix": sys.base_prefix,
        **info,
        "call_overhead_ns": overhead,
        "primitives_ns": primitives,
        "results": results,
        "bytes": encoded,
    }


def profile_child(impl: str, min_time: float, top: int) -> str:
    """cProfile each operation for about ``min_time`` seconds; the top functions by tottime."""
    workload, info = build_workload(impl)
    out = io.StringIO()
    out.write(f"== cProfile of {impl} ({info['module']}, {info['version']}) ==\n")
    for op in OPS:
        func = workload[op]
        number = autorange(timeit.Timer(func), min_time)
        profiler = cProfile.Profile()
        gc.disable()
        try:
            profiler.enable()
            for _ in range(number):
                func()
            profiler.disable()
        finally:
            gc.enable()
        out.write(f"\n--- {OP_LABELS[op]}: {number} calls, top {top} by tottime ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- Orchestration: one subprocess per implementation. ----------------------------------------


def child_command(python: Path | str, impl: str, args: argparse.Namespace) -> list[str]:
    command = [str(python), "-I", str(SCRIPT), "--child", impl]
    command += ["--repeat", str(args.repeat), "--min-time", repr(args.min_time)]
    if args.profile:
        command += ["--profile", "--top", str(args.top)]
    return command


def run_impl(
    python: Path | str, impl: str, label: str, args: argparse.Namespace
) -> tuple[str, str]:
    """Run one child; (stdout, "") or ("", why it failed)."""
    print(f"running {label} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            child_command(python, impl, args),
            capture_output=True,
            text=True,
            env=clean_env(),
            check=False,
        )
    except OSError as exc:
        return "", str(exc)
    if proc.returncode != 0:
        return "", proc.stderr.strip() or f"exit status {proc.returncode}"
    return proc.stdout, ""


def keep_best(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """Merge the rounds of one implementation: the fastest of each measurement."""
    if previous is None:
        current["rounds"] = 1
        return current
    for op in OPS:
        if current["results"][op]["ns_per_op"] < previous["results"][op]["ns_per_op"]:
            previous["results"][op] = current["results"][op]
    previous["call_overhead_ns"] = min(previous["call_overhead_ns"], current["call_overhead_ns"])
    for name, value in current["primitives_ns"].items():
        previous["primitives_ns"][name] = min(previous["primitives_ns"][name], value)
    previous["rounds"] += 1
    return previous


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def geometric_mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    if len(present) != len(values) or not present:
        return None
    product = 1.0
    for value in present:
        product *= value
    return float(product ** (1 / len(present)))


def format_ns(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def format_ratio(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def render_table(report: dict[str, Any]) -> str:
    impls: dict[str, dict[str, Any]] = report["impls"]

    def ns(impl: str, op: str) -> float | None:
        entry = impls.get(impl, {})
        if "results" not in entry:
            return None
        return float(entry["results"][op]["ns_per_op"])

    header = (
        f"{'operation':<16} {'floor ns':>9} {'ours ns':>9} {'upstream ns':>12}"
        f" {'floor/ours':>11} {'floor/upstream':>15} {'upstream/ours':>14}"
    )
    lines = [header, "-" * len(header)]
    columns: dict[str, list[float | None]] = {"fo": [], "fu": [], "uo": []}
    for op in OPS:
        floor, ours, upstream = ns("floor", op), ns("ours", op), ns("upstream", op)
        fo, fu, uo = ratio(floor, ours), ratio(floor, upstream), ratio(upstream, ours)
        columns["fo"].append(fo)
        columns["fu"].append(fu)
        columns["uo"].append(uo)
        lines.append(
            f"{OP_LABELS[op]:<16} {format_ns(floor):>9} {format_ns(ours):>9}"
            f" {format_ns(upstream):>12} {format_ratio(fo):>11} {format_ratio(fu):>15}"
            f" {format_ratio(uo, 'x'):>14}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'geometric mean':<16} {'':>9} {'':>9} {'':>12}"
        f" {format_ratio(geometric_mean(columns['fo'])):>11}"
        f" {format_ratio(geometric_mean(columns['fu'])):>15}"
        f" {format_ratio(geometric_mean(columns['uo']), 'x'):>14}"
    )
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> int:
    impls: dict[str, dict[str, Any]] = {}
    pythons: dict[str, Path | str | None] = {"floor": sys.executable, "ours": sys.executable}
    if args.skip_upstream:
        impls["upstream"] = {"skipped": "--skip-upstream"}
    else:
        python, why = ensure_upstream_venv()
        pythons["upstream"] = python
        if python is None:
            impls["upstream"] = {"skipped": why}
            print(f"upstream skipped: {why}", file=sys.stderr, flush=True)

    wanted = ["ours"] if args.profile else list(IMPLS)
    if args.profile and args.profile_upstream:
        wanted.append("upstream")
    failed = False
    rounds = 1 if args.profile else args.rounds
    for round_number in range(1, rounds + 1):
        for impl in wanted:
            if impl in impls and "results" not in impls[impl]:
                continue  # skipped or failed
            interpreter = pythons[impl]
            assert interpreter is not None
            label = f"{impl} (round {round_number}/{rounds})" if rounds > 1 else impl
            stdout, error = run_impl(interpreter, impl, label, args)
            if error:
                impls[impl] = {"error": error}
                failed = True
            elif args.profile:
                print(stdout)
            else:
                impls[impl] = keep_best(impls.get(impl), json.loads(stdout))
    if args.profile:
        for impl, entry in impls.items():
            if "error" in entry or "skipped" in entry:
                print(f"{impl}: {entry.get('error') or entry.get('skipped')}", file=sys.stderr)
        return 1 if failed else 0

    # The children each checked their bytes against the floor's; check across processes too.
    reference = impls.get("floor", {}).get("bytes")
    for entry in impls.values():
        if reference is not None and "bytes" in entry and entry["bytes"] != reference:
            entry["error"] = "encoded bytes differ from the floor's"
            del entry["results"]
            failed = True

    report: dict[str, Any] = {
        "settings": {
            "repeat": args.repeat,
            "min_time_s": args.min_time,
            "rounds": args.rounds,
            "quick": args.quick,
        },
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "impls": impls,
        "ratios": {},
    }
    for op in OPS:

        def get(impl: str, op: str = op) -> float | None:
            entry = impls.get(impl, {})
            return float(entry["results"][op]["ns_per_op"]) if "results" in entry else None

        report["ratios"][op] = {
            "floor/ours": ratio(get("floor"), get("ours")),
            "floor/upstream": ratio(get("floor"), get("upstream")),
            "upstream/ours": ratio(get("upstream"), get("ours")),
        }

    print()
    print(
        f"STUN codec benchmark: ns/op, best of {args.repeat} repeats of >= {args.min_time:g} s"
        f"{f' x {args.rounds} rounds' if args.rounds > 1 else ''}"
        f"{' (--quick: rough numbers)' if args.quick else ''}"
    )
    runtime = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"{runtime} on {platform.platform()}")
    for impl in IMPLS:
        entry = impls.get(impl, {})
        if "results" in entry:
            print(f"  {impl:<9} {entry['module']} ({entry['version']})")
        elif "skipped" in entry:
            print(f"  {impl:<9} SKIPPED: {entry['skipped']}")
        elif "error" in entry:
            first = entry["error"].strip().splitlines()[-1]
            print(f"  {impl:<9} FAILED: {first}")
    bases = {entry["base_prefix"] for entry in impls.values() if "base_prefix" in entry}
    if len(bases) > 1:
        print(f"  warning: the children ran on different base interpreters: {sorted(bases)}")
    print()
    print(render_table(report))
    print()
    print("ratios: floor/x = floor ns / x ns (higher is better, 1.00 = as fast as the floor);")
    print("        upstream/ours = how many times faster ours is than upstream.")
    overheads = [
        f"{impl} {impls[impl]['call_overhead_ns']:.0f}"
        for impl in IMPLS
        if "call_overhead_ns" in impls.get(impl, {})
    ]
    if overheads:
        print(f"timer loop + empty call overhead (ns, included above): {', '.join(overheads)}")
    primitives = impls.get("floor", {}).get("primitives_ns", {})
    if primitives:
        costs = ", ".join(f"{name} {value:.0f}" for name, value in primitives.items())
        print(f"floor primitives alone (ns, request bytes): {costs}")
    for impl, entry in impls.items():
        if "error" in entry:
            print(f"\n{impl} FAILED:\n{entry['error']}", file=sys.stderr)

    if args.json is not None:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the STUN codec: stdlib floor vs ours vs upstream aioice 0.13.0."
    )
    parser.add_argument("--quick", action="store_true", help="fast smoke run (few loops)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeat", type=int, help="repeats per measurement (default 5, quick 3)")
    parser.add_argument(
        "--min-time",
        type=float,
        help="seconds per repeat, loops auto-ranged to reach it (default 0.1, quick 0.005)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="run the implementation subprocesses round-robin N times and keep the best of"
        " each measurement (default 3, quick 1)",
    )
    parser.add_argument(
        "--skip-upstream", action="store_true", help="do not create or run the upstream venv"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, print a cProfile of ours for each operation",
    )
    parser.add_argument(
        "--profile-upstream", action="store_true", help="with --profile, profile upstream too"
    )
    parser.add_argument("--top", type=int, default=15, help="--profile: functions shown per op")
    parser.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.min_time is None:
        args.min_time = 0.005 if args.quick else 0.1
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.repeat < 1 or args.rounds < 1 or args.min_time <= 0:
        parser.error("--repeat and --rounds must be >= 1, --min-time > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is None:
        return orchestrate(args)
    if args.profile:
        print(profile_child(args.child, args.min_time, args.top))
    else:
        print(json.dumps(run_child(args.child, args.repeat, args.min_time)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
