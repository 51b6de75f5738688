"""Per-key policies: tiers, budgets and escalations per session, enforced and traced."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.exceptions import InvalidStatus

from realtime_cascade import config as config_mod
from realtime_cascade.cli.policy import add_policy_parser
from realtime_cascade.observe.audit import read_records
from realtime_cascade.observe.config import AuditConfig, KeyConfig, KeyPolicy
from realtime_cascade.observe.governance import Governor, KeyTable

from .conftest import ServerFactory
from .helpers import BOOK, HARD, client, trace_of

pytestmark = pytest.mark.anyio

POLICIES = {
    "basic": KeyPolicy(tiers=("light",), turn_cap_usd=0.01),
    "metered": KeyPolicy(max_escalations_per_session=1),
    "pennies": KeyPolicy(turn_cap_usd=0.00005),
}
KEYS = {
    "acme": KeyConfig(key="acme-key-0001", policy="basic"),
    "beta": KeyConfig(key="beta-key-0002", policy="metered"),
    "cheap": KeyConfig(key="cheap-key-003", policy="pennies"),
    "root": KeyConfig(key="root-key-0004"),
}


def governed_config() -> config_mod.Config:
    return msgspec.structs.replace(config_mod.load(), keys=KEYS, policies=POLICIES)


def decisions(trace: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["kind"], d["cause"]) for d in trace["decisions"]]


async def test_tiers_a_key_may_use(make_server: ServerFactory, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    async with make_server(governed_config(), audit=AuditConfig(path=str(log))) as server:
        async with client(server, key="acme-key-0001") as c:
            events = await c.turn(HARD)
            trace = trace_of(events)
            easy = trace_of(await c.turn(BOOK))
        async with client(server, key="root-key-0004") as c:
            free = trace_of(await c.turn(HARD))
    # the policy's refusal is the first decision, sent before the core's own route
    kinds = [e["type"] for e in events]
    first = kinds.index("cascade.decision")
    assert kinds.index("response.created") < first
    sent = events[first]["decision"]
    assert sent == trace["decisions"][0]
    assert (sent["kind"], sent["cause"], sent["tier_name"], sent["to_tier"]) == (
        "refuse",
        "policy",
        "light",
        1,
    )
    assert sent["reason"] == "policy 'basic' allows this key light: no escalation to strong"
    assert trace["decisions"][1]["kind"] == "route"
    # the core cannot escalate: the hard request stays on light
    assert trace["final_tier_name"] == "light" and not trace["escalated"]
    assert all(a["tier_name"] == "light" for a in trace["attempts"])
    assert easy["decisions"][0]["cause"] == "policy"
    # an unrestricted key escalates the same request
    assert free["escalated"] and free["decisions"][0]["kind"] == "route"
    records = list(read_records([str(log)]))
    assert [(r.key, r.policy, r.governed, r.tier_range) for r in records] == [
        ("acme", "basic", True, "light..light"),
        ("acme", "basic", True, "light..light"),
        ("root", None, False, "light..strong"),
    ]
    assert records[0].budgets.turn_cap_usd == 0.01  # min(profile 0.05, policy 0.01)


async def test_explicit_tiers_outside_the_policy_are_refused(make_server: ServerFactory) -> None:
    async with make_server(governed_config()) as server, client(server, key="acme-key-0001") as c:
        await c.send({"type": "session.update", "session": {"cascade": {"max_tier": "strong"}}})
        error = await c.recv()
        assert error["type"] == "error"
        assert error["error"]["code"] == "invalid_value"
        assert error["error"]["param"] == "session.cascade.max_tier"
        assert "policy 'basic'" in error["error"]["message"]
        await c.send({"type": "session.update", "session": {"cascade": {"first_tier": 1}}})
        assert (await c.recv())["error"]["param"] == "session.cascade.first_tier"
        # refused updates changed nothing; a per-response override is vetted the same way
        await c.say(BOOK)
        await c.send({"type": "response.create", "response": {"cascade": {"max_tier": 1}}})
        error = await c.recv()
        assert error["error"]["param"] == "response.cascade.max_tier"
        ok = await c.respond(cascade={"max_tier": "light"})
        assert trace_of(ok)["status"] == "completed"


async def test_max_escalations_per_session(make_server: ServerFactory) -> None:
    async with make_server(governed_config()) as server:
        async with client(server, key="beta-key-0002") as c:
            first = trace_of(await c.turn(HARD))
            second = trace_of(await c.turn(HARD))
            third = trace_of(await c.turn(BOOK))
        async with client(server, key="beta-key-0002") as c:  # a new session starts afresh
            fresh = trace_of(await c.turn(HARD))
    assert first["escalated"] and first["decisions"][0]["kind"] == "route"
    assert not second["escalated"] and second["final_tier_name"] == "light"
    assert second["decisions"][0]["kind"] == "refuse"
    assert second["decisions"][0]["reason"] == (
        "policy 'metered' allows 1 escalated response per session and 1 used: "
        "this turn stays on light"
    )
    assert third["decisions"][0]["cause"] == "policy"
    assert fresh["escalated"]


async def test_budget_caps_bound_the_turn(make_server: ServerFactory) -> None:
    async with make_server(governed_config()) as server, client(server, key="cheap-key-003") as c:
        trace = trace_of(await c.turn(HARD))
    budget = [d for d in trace["decisions"] if d["cause"] == "budget"]
    assert budget, decisions(trace)
    assert trace["cost_usd"] <= 0.00005
    assert not trace["escalated"]


async def test_unknown_keys_and_unset_key_env(make_server: ServerFactory) -> None:
    async with make_server(governed_config()) as server:
        with pytest.raises(InvalidStatus) as info:
            async with client(server, key="nope"):
                pass
        assert info.value.response.status_code == 401
    env_key = {"ops": KeyConfig(key_env="RC_TEST_UNSET_KEY_ENV")}
    cfg = msgspec.structs.replace(config_mod.load(), keys=env_key)
    with pytest.raises(config_mod.ConfigError, match="RC_TEST_UNSET_KEY_ENV is unset"):
        async with make_server(cfg):
            pass


def test_key_table_matches_and_defaults() -> None:
    policies = {"default": KeyPolicy(tiers=("light",)), "vip": KeyPolicy()}
    keys = {"ops": KeyConfig(key_env="OPS_KEY", policy="vip")}
    table = KeyTable.from_config(("plain-1",), keys, policies, {"OPS_KEY": "ops-secret"})
    assert table.secrets == ("plain-1", "ops-secret")
    plain = table.match(["wrong", "plain-1"])
    assert plain is not None and (plain.key, plain.policy_name) == ("api_keys[0]", "default")
    ops = table.match(["ops-secret"])
    assert ops is not None and (ops.key, ops.policy_name) == ("ops", "vip")
    assert table.match(["wrong"]) is None
    open_table = KeyTable.from_config((), {}, policies, {})
    anon = open_table.match([])
    assert anon is not None and anon.policy_name == "default" and anon.key is None


def test_governor_without_a_policy_changes_nothing() -> None:
    params = config_mod.load().profiles["default"].params()
    g = Governor(KeyTable.from_config((), {}, {}, {}).anonymous, ["light", "strong"])
    out = g.govern(params, 0, None, escalations=99)
    assert (out.first_tier, out.max_tier, out.decision) == (0, 1, None)
    assert out.params is params


THREE = """
[profiles.p]
[[profiles.p.tiers]]
name = "a"
[[profiles.p.tiers]]
name = "b"
[[profiles.p.tiers]]
name = "c"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[policies.x]\ntiers = ["a", "c"]\n', r"policies\.x\.tiers: a, c is not a contiguous run"),
        ('[policies.x]\ntiers = ["z"]\n', r"policies\.x\.tiers: unknown tier 'z'"),
        ("[policies.x]\ntiers = []\n", r"policies\.x\.tiers: must name at least one tier"),
        ("[policies.x]\nturn_cap_usd = -1\n", r"policies\.x\.turn_cap_usd: must not be negative"),
        ('[keys.k]\nkey = "abcd"\npolicy = "nope"\n', r"keys\.k\.policy: unknown policy 'nope'"),
        ('[keys.k]\nkey = "abcd"\nkey_env = "E"\n', r"keys\.k: set exactly one of key or key_env"),
        ("[keys.k]\n", r"keys\.k: set exactly one"),
        ("[policies.x]\nmax_tier = 1\n", r"unknown field `max_tier`"),
    ],
)
def test_bad_governance_config_is_named(extra: str, message: str) -> None:
    with pytest.raises(config_mod.ConfigError, match=message):
        config_mod.loads(THREE + extra)


POLICY_CONFIG = """
[profiles.default]
[[profiles.default.tiers]]
name = "light"
price_in = 0.15
price_out = 0.60
provider = { kind = "sim", skill = 0.5 }
[[profiles.default.tiers]]
name = "strong"
price_in = 2.50
price_out = 10.00
quality = 0.97
provider = { kind = "openai", base_url = "http://x.test/v1", model = "big", \
api_key_env = "RC_UNSET_UPSTREAM" }

[keys.acme]
key_env = "RC_UNSET_ACME"
policy = "basic"
[keys.ops]
key = "ops-key-1234"

[policies.basic]
tiers = ["light"]
turn_cap_usd = 0.01
max_escalations_per_session = 2

[policies.default]
session_cap_usd = 0.25
"""


def run_policy_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_policy_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_policy_check_prints_effective_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(POLICY_CONFIG)
    assert run_policy_cli(["policy", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}: valid" in out
    assert "server: 127.0.0.1:8765, 2 API key(s)" in out
    assert "profile default" in out
    assert "openai big at http://x.test/v1" in out
    assert (
        "basic [acme]: tiers light, $0.0100 a turn, $1.00 a session, 2 escalations a session" in out
    )
    assert "default [ops]: tiers light..strong, $0.0500 a turn, $0.25 a session" in out
    assert "RC_UNSET_ACME is not set here" in err
    assert "RC_UNSET_UPSTREAM is not set here" in err
    assert run_policy_cli(["policy", "check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    access = report["profiles"]["default"]["access"]
    assert access["basic"] == {
        "tiers": ["light"],
        "turn_cap_usd": 0.01,
        "session_cap_usd": 1.0,
        "max_escalations_per_session": 2,
        "keys": ["acme"],
    }
    assert access["default"]["keys"] == ["ops"]
    assert report["errors"] == []


def test_policy_check_fails_on_unusable_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(THREE + '[policies.x]\ntiers = ["a", "c"]\n')
    assert run_policy_cli(["policy", "check", str(bad)]) == 2
    assert "not a contiguous run" in capsys.readouterr().err
    exposed = tmp_path / "open.toml"
    exposed.write_text(THREE + '[server]\nhost = "0.0.0.0"\n')
    assert run_policy_cli(["policy", "check", str(exposed)]) == 2
    assert "serve would refuse to start" in capsys.readouterr().err
    script = tmp_path / "script.toml"
    script.write_text(THREE.replace("[profiles.p]\n", '[profiles.p]\nscript = "no.such:thing"\n'))
    assert run_policy_cli(["policy", "check", str(script)]) == 2
    assert "no.such:thing" in capsys.readouterr().err


def test_policy_check_on_the_shipped_configs(capsys: pytest.CaptureFixture[str]) -> None:
    booking = Path(__file__).resolve().parents[2] / "demos" / "booking" / "config.toml"
    assert run_policy_cli(["policy", "check", str(booking)]) == 0
    assert "profile booking" in capsys.readouterr().out
