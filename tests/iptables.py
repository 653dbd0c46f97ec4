"""A small interpreter of the iptables commands the generated firewall script uses, so tests
judge the rules by what they do to packets, not by their text.

It runs the script line by line with the shell's ``A || B`` meaning (B runs when A fails) and
understands exactly the iptables/ip6tables verbs the script needs: -N (new chain, fails if it
exists), -F (flush), -A (append), -I (insert first), -C (check, fails if absent), with the
matches -p, --dport, -s, -i and -m conntrack --ctstate, and a -j target. Packets are judged as
TCP packets of a connection in a given conntrack state (NEW unless said): a conntrack rule
matches them only if it names that state, an -i lo rule only if they come from a loopback
address. Anything else raises, so a script this model does
not understand fails the test instead of being half-judged.

Where a packet enters depends on how the containers are networked: with host networking
(`docker run --network host`, what generated projects use) every port is the host's and
packets go through INPUT; with a published port (bridge networking) Docker forwards them
through its DOCKER-USER chain. SSH always reaches the host through INPUT. A packet no rule
decides is accepted (a fresh server's policies are ACCEPT, and Docker accepts published ports).
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

BUILTIN = ("INPUT", "DOCKER-USER")
TOOLS = {"iptables": 4, "ip6tables": 6}


class IptablesError(Exception):
    """An iptables command that would fail (the shell's `||` then runs its right side)."""


@dataclass(frozen=True, slots=True)
class Rule:
    protocol: str | None
    dport: int | None
    source: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    target: str
    interface: str | None = None
    states: frozenset[str] | None = None

    def matches(self, src: str, protocol: str, dport: int, state: str = "NEW") -> bool:
        loopback = ipaddress.ip_address(src).is_loopback
        return (
            (self.protocol is None or self.protocol == protocol)
            and (self.dport is None or self.dport == dport)
            and (self.source is None or ipaddress.ip_address(src) in self.source)
            and (self.interface is None or (self.interface == "lo") == loopback)
            and (self.states is None or state in self.states)
        )


class Firewall:
    """The rule tables of one host, IPv4 and IPv6 apart."""

    def __init__(self, host_network: bool = True) -> None:
        self.host_network = host_network
        self.chains: dict[int, dict[str, list[Rule]]] = {
            v: {name: [] for name in BUILTIN} for v in TOOLS.values()
        }

    # ------------------------------------------------------------------ running a script
    def run_script(self, script: str) -> None:
        for raw in script.splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or line == "set -e":
                continue
            alternatives = [shlex.split(part) for part in line.split("||")]
            for i, words in enumerate(alternatives):
                words = [w for w in words if w != "2>/dev/null"]
                try:
                    self.run(words)
                    break
                except IptablesError:
                    if i == len(alternatives) - 1:
                        raise  # `set -e`: the script would stop here

    def run(self, words: list[str]) -> None:
        if not words or words[0] not in TOOLS:
            raise ValueError(f"not an iptables command: {words}")
        chains = self.chains[TOOLS[words[0]]]
        verb, chain, spec = words[1], words[2], words[3:]
        if verb == "-N":
            if chain in chains:
                raise IptablesError(f"chain {chain} exists")
            chains[chain] = []
        elif verb == "-F":
            self._chain(chains, chain).clear()
        elif verb == "-A":
            self._chain(chains, chain).append(self._rule(chains, spec))
        elif verb == "-I":
            self._chain(chains, chain).insert(0, self._rule(chains, spec))
        elif verb == "-C":
            if self._rule(chains, spec) not in self._chain(chains, chain):
                raise IptablesError(f"no such rule in {chain}")
        else:
            raise ValueError(f"iptables verb this model does not know: {verb}")

    @staticmethod
    def _chain(chains: dict[str, list[Rule]], name: str) -> list[Rule]:
        if name not in chains:
            raise IptablesError(f"no chain {name}")
        return chains[name]

    @staticmethod
    def _rule(chains: dict[str, list[Rule]], spec: list[str]) -> Rule:
        opts: dict[str, str] = {}
        for flag, value in zip(spec[::2], spec[1::2], strict=True):
            if flag not in {"-p", "--dport", "-s", "-j", "-i", "-m", "--ctstate"} or flag in opts:
                raise ValueError(f"iptables option this model does not know: {flag}")
            opts[flag] = value
        if opts.get("-m", "conntrack") != "conntrack" or ("-m" in opts) != ("--ctstate" in opts):
            raise ValueError(f"iptables match this model does not know: {spec}")
        target = opts["-j"]
        if target not in {"ACCEPT", "DROP", "REJECT", "RETURN"} and target not in chains:
            raise IptablesError(f"no chain {target} to jump to")
        return Rule(
            protocol=opts.get("-p"),
            dport=int(opts["--dport"]) if "--dport" in opts else None,
            source=ipaddress.ip_network(opts["-s"]) if "-s" in opts else None,
            target=target,
            interface=opts.get("-i"),
            states=frozenset(opts["--ctstate"].split(",")) if "--ctstate" in opts else None,
        )

    # ------------------------------------------------------------------ judging packets
    def verdict(self, src: str, dport: int, protocol: str = "tcp", state: str = "NEW") -> str:
        """ACCEPT or DROP/REJECT for a packet from ``src`` to ``dport`` of a connection in
        ``state`` (conntrack's: NEW, or ESTABLISHED for one already open)."""
        version = ipaddress.ip_address(src).version
        entry = "INPUT" if dport == 22 or self.host_network else "DOCKER-USER"
        decided = self._walk(self.chains[version], entry, src, protocol, dport, state, depth=0)
        return decided or "ACCEPT"

    def _walk(
        self,
        chains: dict[str, list[Rule]],
        name: str,
        src: str,
        protocol: str,
        dport: int,
        state: str,
        depth: int,
    ) -> str | None:
        if depth > 8:
            raise ValueError("chain loop")
        for rule in chains[name]:
            if not rule.matches(src, protocol, dport, state):
                continue
            if rule.target == "RETURN":
                return None
            if rule.target in {"ACCEPT", "DROP", "REJECT"}:
                return rule.target
            decided = self._walk(chains, rule.target, src, protocol, dport, state, depth + 1)
            if decided is not None:
                return decided
        return None
