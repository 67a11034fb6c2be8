"""The RFC 5780 NAT probe against our own server, behind a real kernel NAT (nftables).

The lab (see conftest.py): client -- router (nftables NAT) -- server with A1 and A2.

- ``masquerade`` keeps the source port whenever the resulting tuple is unique, so every
  destination sees the same mapped address: endpoint-independent mapping.
- ``masquerade random-fully`` picks a random port for every new conntrack entry, that is
  for every new destination address or port: address-and-port-dependent mapping.
- Both are conntrack-based: an inbound packet is translated back only when it is the reply
  of an existing entry, which matches the server's exact address *and* port. Responses
  from another IP or port (filtering tests II and III) match no entry, reach the router's
  own stack and are dropped: address-and-port-dependent filtering, deterministically, as
  the router has no other rule (no DNAT, no port forwarding).
- ``none`` (plain routing) is the control: the server sees the client's own address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.netns.conftest import NatLab


@pytest.mark.netns
@pytest.mark.parametrize(
    ("nat_lab", "behind_nat", "mapping", "filtering"),
    [
        pytest.param(
            "masquerade",
            "yes",
            "endpoint-independent",
            "address-and-port-dependent",
            id="masquerade",
        ),
        pytest.param(
            "random-fully",
            "yes",
            "address-and-port-dependent",
            "address-and-port-dependent",
            id="random-fully",
        ),
        pytest.param(
            "none",
            "no",
            "endpoint-independent",
            "endpoint-independent",
            id="no-nat",
        ),
    ],
    indirect=["nat_lab"],
)
def test_probe_reports_the_kernel_nat_behaviour(
    nat_lab: NatLab, behind_nat: str, mapping: str, filtering: str
) -> None:
    nat_lab.start_server()
    report = nat_lab.probe()
    context = (
        f"NAT {nat_lab.nat!r}, probe output:\n{report.output}"
        f"router ruleset:\n{nat_lab.ruleset() or '(empty)'}"
    )
    print(context)  # shown with -rP, for the record
    mapped_host = nat_lab.public_address if behind_nat == "yes" else nat_lab.client_address
    assert report.behind_nat == behind_nat, context
    assert report.mapped_address.rpartition(":")[0] == mapped_host, context
    assert report.mapping == mapping, context
    assert report.filtering == filtering, context
