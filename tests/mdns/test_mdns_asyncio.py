"""The asyncio adapter in-process: sharing, reference counting, clean shutdown.

Decision: every test that opens the multicast sockets runs on a thread inside a network
namespace of the ``mdns_lab`` fixture (``MdnsLab.call_in``), so nothing is sent on, or
bound to, the host's own interfaces; those tests skip when namespaces are unavailable.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from aioice.mdns import MdnsConfig
from aioice.mdns import asyncio as mdns_asyncio
from aioice.mdns.__main__ import main

if TYPE_CHECKING:
    from tests.mdns.conftest import MdnsLab

netns = pytest.mark.netns


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@netns
def test_two_acquires_share_one_service(mdns_lab: MdnsLab) -> None:
    async def main_() -> None:
        fds = _fds()
        first = await mdns_asyncio.acquire()
        second = await mdns_asyncio.acquire()
        assert first.service is second.service
        assert first.families == (4, 6)
        assert len(_fds() - fds) == 2  # one IPv4 and one IPv6 socket, not four
        await first.release()
        await first.release()  # idempotent
        assert second.families == (4, 6)  # still running for the second user
        with pytest.raises(RuntimeError):
            await first.resolve("x.local")
        async with mdns_asyncio.mdns_service() as third:
            assert third.service is second.service
        core = second.service
        await second.release()
        await asyncio.sleep(0)
        assert _fds() == fds
        assert asyncio.all_tasks() == {asyncio.current_task()}
        # A new user after the last release starts a new service.
        async with mdns_asyncio.mdns_service() as fourth:
            assert fourth.service is not core
        assert _fds() == fds

    mdns_lab.call_in(mdns_lab.a, main_)


def _loop_factories() -> list[Any]:
    factories: list[Any] = [pytest.param(None, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        factories.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip("no uvloop")))
    else:
        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


@netns
@pytest.mark.parametrize("loop_factory", _loop_factories())
def test_publish_and_resolve_across_namespaces(
    mdns_lab: MdnsLab, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    name = f"{uuid.uuid4()}.local"
    publisher = mdns_lab.mdns(mdns_lab.b, "publish", name, mdns_lab.b_ipv4)
    mdns_lab.wait_for_line(publisher, "published", timeout=10)

    async def main_() -> tuple[str | None, tuple[str, ...], str | None, str | None]:
        async with mdns_asyncio.mdns_service() as client:
            found = await client.resolve(name, timeout=5)
            cached = client.service.lookup(name, now=asyncio.get_running_loop().time())
            missing = await client.resolve(f"{uuid.uuid4()}.local", timeout=0.5)
            await client.publish("own.local", "192.0.2.1")
            own = await client.resolve("own.local", timeout=1)
        return found, cached, missing, own

    found, cached, missing, own = mdns_lab.call_in(mdns_lab.a, main_, loop_factory=loop_factory)
    assert found == mdns_lab.b_ipv4
    assert cached == (mdns_lab.b_ipv4,)
    assert missing is None
    assert own == "192.0.2.1"


@netns
def test_release_says_goodbye(mdns_lab: MdnsLab) -> None:
    name = f"{uuid.uuid4()}.local"

    async def publish_then_release() -> None:
        client = await mdns_asyncio.acquire()
        await client.publish(name, "192.0.2.1")
        await client.release()  # unpublishes: later queries get no answer

    mdns_lab.call_in(mdns_lab.a, publish_then_release)
    code, output = mdns_lab.run_mdns(mdns_lab.b, "resolve", name, "--timeout", "1", timeout=10)
    assert code == 1, output


@netns
def test_no_multicast_interface_fails_cleanly(mdns_lab: MdnsLab) -> None:
    async def main_() -> tuple[tuple[int, ...], str | None]:
        async with mdns_asyncio.mdns_service(interfaces=["no-such-if"]) as client:
            families = client.families
            loop = asyncio.get_running_loop()
            started = loop.time()
            address = await client.resolve("anything.local", timeout=5)
            assert loop.time() - started < 1  # at once, not after the timeout
            await client.publish("mine.local", "192.0.2.1")  # a no-op
        return families, address

    assert mdns_lab.call_in(mdns_lab.a, main_) == ((), None)


@netns
def test_other_options_are_refused(mdns_lab: MdnsLab) -> None:
    async def main_() -> None:
        async with mdns_asyncio.mdns_service(config=MdnsConfig(families=(4,))) as client:
            assert client.families == (4,)
            with pytest.raises(ValueError, match="other options"):
                await mdns_asyncio.acquire(interfaces=["lo"])
            async with mdns_asyncio.mdns_service() as default:  # no options: shares
                assert default.service is client.service

    mdns_lab.call_in(mdns_lab.a, main_)


def test_cli_rejects_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["publish", "x.local", "not-an-address"])
    assert info.value.code == 2
    assert "not an IP address" in capsys.readouterr().err
