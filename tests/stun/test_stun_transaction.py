"""The sans-I/O client transaction (RFC 8489 §6.2), in virtual time from ``now = 0.0``."""

from __future__ import annotations

import pytest
from aioice import stun
from aioice.stun import (
    Class,
    Message,
    Method,
    StunStateError,
    Transaction,
    TransactionConfig,
    TransactionFailed,
    TransactionTimeout,
    parse_message,
)

SERVER = ("192.0.2.1", 3478)
MAPPED = ("198.51.100.7", 40000)
TID = bytes(range(12))
KEY = b"integrity key"

# RFC 8489 defaults with Rc = 7: RTO doubles from 0.5 s; the last wait is Rm * RTO = 8 s.
DEFAULT_SENDS = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
DEFAULT_TIMEOUT = 39.5


def make_request(tid: bytes = TID) -> Message:
    return Message(Method.BINDING, Class.REQUEST, tid)


def make_response(
    tid: bytes = TID, message_class: Class = Class.RESPONSE, **attributes: object
) -> Message:
    """A response as received: encoded, then parsed."""
    message = Message(Method.BINDING, message_class, tid, {"XOR-MAPPED-ADDRESS": MAPPED})
    message.attributes.update({k.replace("_", "-"): v for k, v in attributes.items()})
    return parse_message(bytes(message))


def signed_response(key: bytes, message_class: Class = Class.RESPONSE) -> Message:
    message = Message(Method.BINDING, message_class, TID, {"XOR-MAPPED-ADDRESS": MAPPED})
    if message_class == Class.ERROR:
        message.attributes = {"ERROR-CODE": (401, "Unauthorized")}
    message.add_message_integrity(key)
    return parse_message(bytes(message))


def done(transaction: Transaction) -> bool:
    # (A call, so that mypy does not narrow ``done`` across handle_timer.)
    return transaction.done


def run_to_end(transaction: Transaction, max_steps: int = 100) -> tuple[list[float], float]:
    """Follow ``get_timer()`` until the transaction ends.

    Returns the times at which a request was sent and the time it ended.
    """
    request_data = bytes(transaction.request)
    sends: list[float] = []
    now = 0.0
    transaction.start(now=now)
    for _ in range(max_steps):
        for transmit in transaction.datagrams_to_send():
            assert transmit.data == request_data
            assert transmit.remote == SERVER
            assert transmit.local is None
            sends.append(now)
        if transaction.done:
            return sends, now
        timer = transaction.get_timer()
        assert timer is not None
        assert timer > now
        now = timer
        transaction.handle_timer(now=now)
    raise AssertionError(f"transaction still running after {max_steps} steps")


def test_default_schedule_and_timeout() -> None:
    transaction = Transaction(make_request(), SERVER)
    sends, end = run_to_end(transaction)
    assert sends == DEFAULT_SENDS
    assert end == DEFAULT_TIMEOUT == 31.5 + 16 * 0.5
    assert transaction.requests_sent == 7
    assert transaction.get_timer() is None
    assert transaction.rtt is None
    with pytest.raises(TransactionTimeout):
        transaction.result()


def test_default_timer_values_step_by_step() -> None:
    transaction = Transaction(make_request(), SERVER)
    assert transaction.get_timer() is None
    assert not transaction.done
    transaction.start(now=0.0)
    assert len(transaction.datagrams_to_send()) == 1
    expected_timers = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 39.5]
    for step, timer in enumerate(expected_timers):
        assert transaction.get_timer() == timer
        assert transaction.requests_sent == step + 1
        # Early: nothing happens.
        transaction.handle_timer(now=timer - 0.001)
        assert transaction.datagrams_to_send() == []
        assert transaction.get_timer() == timer
        assert not transaction.done
        transaction.handle_timer(now=timer)
        sent = transaction.datagrams_to_send()
        if timer == DEFAULT_TIMEOUT:
            assert sent == []
        else:
            assert len(sent) == 1
    assert done(transaction)
    assert transaction.requests_sent == 7
    assert transaction.get_timer() is None


def test_handle_timer_before_start_and_early_is_a_no_op() -> None:
    transaction = Transaction(make_request(), SERVER)
    transaction.handle_timer(now=100.0)
    assert transaction.datagrams_to_send() == []
    assert not transaction.done
    transaction.start(now=10.0)
    assert len(transaction.datagrams_to_send()) == 1
    transaction.handle_timer(now=10.0)
    transaction.handle_timer(now=10.499)
    assert transaction.datagrams_to_send() == []
    assert transaction.get_timer() == 10.5
    assert transaction.requests_sent == 1


def test_response_ends_with_response_and_rtt() -> None:
    transaction = Transaction(make_request(), SERVER)
    transaction.start(now=0.0)
    transaction.handle_timer(now=0.5)
    transaction.handle_timer(now=1.5)
    assert transaction.requests_sent == 3
    assert len(transaction.datagrams_to_send()) == 3
    response = make_response()
    assert transaction.receive_response(response, SERVER, now=2.25)
    assert transaction.done
    assert transaction.rtt == 2.25
    assert transaction.get_timer() is None
    message, remote = transaction.result()
    assert message is response
    assert remote == SERVER
    assert message.attributes["XOR-MAPPED-ADDRESS"] == MAPPED
    # Ended: later responses and timers change nothing.
    assert not transaction.receive_response(make_response(), SERVER, now=3.0)
    transaction.handle_timer(now=100.0)
    assert transaction.datagrams_to_send() == []
    assert transaction.rtt == 2.25


def test_error_response_fails_with_the_response() -> None:
    transaction = Transaction(make_request(), SERVER)
    transaction.start(now=0.0)
    error = make_response(message_class=Class.ERROR, ERROR_CODE=(400, "Bad Request"))
    assert transaction.receive_response(error, SERVER, now=0.1)
    assert transaction.done
    assert transaction.rtt == 0.1
    with pytest.raises(TransactionFailed) as info:
        transaction.result()
    assert info.value.response is error
    assert info.value.response.error_code == 400
    assert str(info.value) == "STUN transaction failed (400 - Bad Request)"


@pytest.mark.parametrize(
    "message",
    [
        make_response(tid=b"\xff" * 12),
        make_response(message_class=Class.REQUEST),
        make_response(message_class=Class.INDICATION),
    ],
    ids=["other-transaction-id", "request", "indication"],
)
def test_unrelated_messages_are_ignored(message: Message) -> None:
    transaction = Transaction(make_request(), SERVER)
    transaction.start(now=0.0)
    transaction.datagrams_to_send()
    assert not transaction.receive_response(message, SERVER, now=0.2)
    assert not transaction.done
    assert transaction.dropped_unauthenticated == 0
    assert transaction.get_timer() == 0.5
    transaction.handle_timer(now=0.5)
    assert len(transaction.datagrams_to_send()) == 1
    assert transaction.requests_sent == 2


def test_response_before_start_is_ignored() -> None:
    transaction = Transaction(make_request(), SERVER)
    assert not transaction.receive_response(make_response(), SERVER, now=0.0)
    assert not transaction.done


def test_integrity_key_drops_unauthenticated_responses() -> None:
    transaction = Transaction(make_request(), SERVER, integrity_key=KEY)
    transaction.start(now=0.0)
    transaction.datagrams_to_send()
    # Unsigned, then signed with another key: both dropped.
    assert not transaction.receive_response(make_response(), SERVER, now=0.1)
    assert not transaction.receive_response(signed_response(b"wrong"), SERVER, now=0.2)
    # An unsigned 401 is dropped too without long_term_credential.
    unsigned_401 = make_response(message_class=Class.ERROR, ERROR_CODE=(401, "Unauthorized"))
    assert not transaction.receive_response(unsigned_401, SERVER, now=0.3)
    assert transaction.dropped_unauthenticated == 3
    assert not transaction.done
    # Retransmissions continue on schedule.
    assert transaction.get_timer() == 0.5
    transaction.handle_timer(now=0.5)
    assert len(transaction.datagrams_to_send()) == 1
    assert transaction.get_timer() == 1.5
    good = signed_response(KEY)
    assert transaction.receive_response(good, SERVER, now=0.75)
    assert transaction.result() == (good, SERVER)
    assert transaction.rtt == 0.75
    assert transaction.dropped_unauthenticated == 3


def test_integrity_key_signed_error_response_fails() -> None:
    transaction = Transaction(make_request(), SERVER, integrity_key=KEY)
    transaction.start(now=0.0)
    error = signed_response(KEY, Class.ERROR)
    assert transaction.receive_response(error, SERVER, now=0.1)
    with pytest.raises(TransactionFailed) as info:
        transaction.result()
    assert info.value.response.error_code == 401


@pytest.mark.parametrize("code", [401, 438])
def test_long_term_credential_accepts_unsigned_401_and_438(code: int) -> None:
    transaction = Transaction(make_request(), SERVER, integrity_key=KEY, long_term_credential=True)
    transaction.start(now=0.0)
    error = make_response(
        message_class=Class.ERROR, ERROR_CODE=(code, "Retry"), REALM="example.org"
    )
    assert transaction.receive_response(error, SERVER, now=0.1)
    assert transaction.dropped_unauthenticated == 0
    with pytest.raises(TransactionFailed) as info:
        transaction.result()
    assert info.value.response.error_code == code
    assert info.value.response.attributes["REALM"] == "example.org"


def test_long_term_credential_still_drops_unsigned_success_and_other_errors() -> None:
    transaction = Transaction(make_request(), SERVER, integrity_key=KEY, long_term_credential=True)
    transaction.start(now=0.0)
    assert not transaction.receive_response(make_response(), SERVER, now=0.1)
    unsigned_400 = make_response(message_class=Class.ERROR, ERROR_CODE=(400, "Bad"))
    assert not transaction.receive_response(unsigned_400, SERVER, now=0.2)
    assert transaction.dropped_unauthenticated == 2
    assert not transaction.done


def test_max_rto_caps_the_doubling() -> None:
    config = TransactionConfig(max_rto=2.0)
    transaction = Transaction(make_request(), SERVER, config=config)
    sends, end = run_to_end(transaction)
    assert sends == [0.0, 0.5, 1.5, 3.5, 5.5, 7.5, 9.5]
    # The last wait is still Rm times the initial RTO.
    assert end == 9.5 + 16 * 0.5


def test_custom_schedule() -> None:
    config = TransactionConfig(rto=0.25, retransmissions=3, rm=4)
    sends, end = run_to_end(Transaction(make_request(), SERVER, config=config))
    assert sends == [0.0, 0.25, 0.75, 1.75]
    assert end == 2.75


def test_no_retransmissions() -> None:
    config = TransactionConfig(rto=1.0, retransmissions=0, rm=3)
    sends, end = run_to_end(Transaction(make_request(), SERVER, config=config))
    assert sends == [0.0]
    assert end == 3.0


def test_reliable_sends_once_and_times_out_after_ti() -> None:
    transaction = Transaction(make_request(), SERVER, config=TransactionConfig(reliable=True))
    sends, end = run_to_end(transaction)
    assert sends == [0.0]
    assert end == 39.5
    assert transaction.requests_sent == 1
    with pytest.raises(TransactionTimeout):
        transaction.result()


def test_reliable_custom_timeout_and_early_timer() -> None:
    config = TransactionConfig(reliable=True, reliable_timeout=5.0)
    transaction = Transaction(make_request(), SERVER, config=config)
    transaction.start(now=1.0)
    assert len(transaction.datagrams_to_send()) == 1
    assert transaction.get_timer() == 6.0
    transaction.handle_timer(now=5.999)
    assert not transaction.done
    assert transaction.datagrams_to_send() == []
    transaction.handle_timer(now=6.0)
    assert done(transaction)
    assert transaction.datagrams_to_send() == []
    with pytest.raises(TransactionTimeout):
        transaction.result()


def test_reliable_response() -> None:
    config = TransactionConfig(reliable=True, reliable_timeout=5.0)
    transaction = Transaction(make_request(), SERVER, config=config)
    transaction.start(now=0.0)
    assert transaction.receive_response(make_response(), SERVER, now=4.0)
    assert transaction.result()[0].attributes["XOR-MAPPED-ADDRESS"] == MAPPED
    assert transaction.rtt == 4.0


def test_cancel() -> None:
    transaction = Transaction(make_request(), SERVER)
    transaction.start(now=0.0)
    transaction.cancel()
    assert transaction.done
    assert transaction.get_timer() is None
    # The pending first send is discarded too.
    assert transaction.datagrams_to_send() == []
    transaction.handle_timer(now=0.5)
    assert transaction.datagrams_to_send() == []
    assert not transaction.receive_response(make_response(), SERVER, now=0.6)
    with pytest.raises(TransactionTimeout):
        transaction.result()
    # Cancelling twice, or after the end, changes nothing.
    transaction.cancel()
    with pytest.raises(TransactionTimeout):
        transaction.result()


def test_cancel_after_response_keeps_the_response() -> None:
    transaction = Transaction(make_request(), SERVER)
    transaction.start(now=0.0)
    transaction.receive_response(make_response(), SERVER, now=0.1)
    transaction.cancel()
    assert transaction.result()[1] == SERVER


def test_start_twice_raises() -> None:
    transaction = Transaction(make_request(), SERVER)
    transaction.start(now=0.0)
    with pytest.raises(StunStateError, match="already started"):
        transaction.start(now=1.0)
    assert transaction.requests_sent == 1


def test_result_before_the_end_raises() -> None:
    transaction = Transaction(make_request(), SERVER)
    with pytest.raises(StunStateError):
        transaction.result()
    transaction.start(now=0.0)
    with pytest.raises(StunStateError, match="has not ended"):
        transaction.result()


def test_only_requests_start_transactions() -> None:
    with pytest.raises(ValueError, match="request"):
        Transaction(Message(Method.BINDING, Class.INDICATION), SERVER)


def test_transaction_id_and_request_bytes() -> None:
    transaction = Transaction(make_request(), SERVER)
    assert transaction.transaction_id == TID
    transaction.start(now=0.0)
    # The request is encoded once at start: later changes are not sent.
    transaction.request.attributes["SOFTWARE"] = "changed"
    transaction.handle_timer(now=0.5)
    first, second = transaction.datagrams_to_send()
    assert first.data == second.data == bytes(make_request())
    assert parse_message(second.data).attributes == {}


def test_default_config() -> None:
    config = Transaction(make_request(), SERVER).config
    assert config == TransactionConfig(
        rto=0.5, retransmissions=6, rm=16, max_rto=None, reliable=False, reliable_timeout=39.5
    )


def test_default_transaction_config_reads_the_module_tunables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert stun.default_transaction_config() == TransactionConfig()
    monkeypatch.setattr(stun, "RETRY_MAX", 1)
    monkeypatch.setattr(stun, "RETRY_RTO", 0.1)
    config = stun.default_transaction_config()
    assert config == TransactionConfig(rto=0.1, retransmissions=1)
    sends, end = run_to_end(Transaction(make_request(), SERVER, config=config))
    assert sends == [0.0, 0.1]
    assert end == 0.1 + 16 * 0.1
    # Keyword overrides win over the tunables.
    assert stun.default_transaction_config(rm=4, rto=1.0).rm == 4
    assert stun.default_transaction_config(rm=4, rto=1.0).rto == 1.0
    assert stun.default_transaction_config(rm=4, rto=1.0).retransmissions == 1
