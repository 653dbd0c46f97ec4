"""HTTPS on GCP and Hetzner with --tls-domain: Caddy on the machine gets a Let's Encrypt
certificate (HTTP-01 on port 80) and serves 443 in front of the authenticating proxy, which then
listens on loopback only. Where that cannot work (Vast's remapped ports, RunPod's own proxy,
AWS without a certificate, replicas), the option is refused with the reason. Under mocks, as
tests/test_generate.py."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from infra.emit import ProjectOptions, render_project, write_project
from planner.errors import UsageError
from tests.test_generate import (
    CIDR,
    HETZNER_CONFIG,
    SSH,
    boot_files,
    by_type,
    extras_module,
    make_plan,
    probes,
    run_program,
)
from tests.test_generate_scale import multi_node_plan, replica_plan

DOMAIN = "llm.example.com"
CADDY = "/opt/gpuplan/Caddyfile"


def tls_opts(provider: str, **extra) -> ProjectOptions:
    ssh = SSH if provider == "hetzner" else None
    return ProjectOptions(allowed_cidrs=(CIDR,), ssh_cidr=ssh, tls_domain=DOMAIN, **extra)


def check_tls_boot(script: str) -> dict[str, str]:
    """The machine's side: Caddy for the domain, HTTP-01 only, no HTTP/3, no admin API, in
    front of a proxy that listens on loopback; its unit enabled and (re)started with the rest."""
    files = boot_files(script)
    caddy = files[CADDY]
    site = caddy.split(f"{DOMAIN} {{", 1)[1]
    assert "\t\t\tdir https://acme-v02.api.letsencrypt.org/directory\n" in site
    # retries validate against staging first: a domain whose DNS is not ready yet does not
    # burn production's failed-validation limit (5 per account and hostname an hour)
    assert "\t\t\ttest_dir https://acme-staging-v02.api.letsencrypt.org/directory\n" in site
    assert "disable_tlsalpn_challenge" in site and "disable_http_challenge" not in site
    assert "reverse_proxy 127.0.0.1:8000" in site and "flush_interval -1" in site
    glob = caddy.split(f"{DOMAIN} {{", 1)[0]
    # UDP 443 (HTTP/3) is not covered by the TCP firewall rules, and HTTP/2 bodies without a
    # length would reach the proxy chunked (411); the admin API would let anything on the host
    # reconfigure Caddy; redirects would serve port 80 all the time
    assert "\t\tprotocols h1\n" in glob and "h2" not in caddy and "h3" not in caddy
    assert "admin off" in glob and "auto_https disable_redirects" in glob
    run = shlex.split(files["/opt/gpuplan/run-tls.sh"].splitlines()[-1])
    assert run[:8] == [
        "exec",
        "docker",
        "run",
        "--rm",
        "--name",
        "gpuplan-tls",
        "--network",
        "host",
    ]
    assert "caddy:2.10.2" in run and f"{CADDY}:/etc/caddy/Caddyfile:ro" in run
    assert "/opt/gpuplan/caddy/data:/data" in run  # the certificate survives restarts
    proxy = files["/opt/gpuplan/run-proxy.sh"]
    assert "/gpuplan_proxy.py 127.0.0.1 8000 8001" in proxy and "0.0.0.0" not in proxy
    assert "install -d -m 700 /opt/gpuplan/caddy" in script
    assert "ExecStart=/opt/gpuplan/run-tls.sh" in files["/etc/systemd/system/gpuplan-tls.service"]
    units = "vllm.service gpuplan-proxy.service gpuplan-tls.service"
    assert f"systemctl enable {units}" in script
    # vLLM and the proxy restart on every run; Caddy only when its files changed
    assert "systemctl restart vllm.service gpuplan-proxy.service; if [ " in script
    assert script.index('tls_before="') < script.index(CADDY) < script.index('tls_after="')
    return files


def test_gcp_https_for_a_domain_with_a_static_address(tmp_path):
    out = tmp_path / "gcp"
    write_project(render_project(make_plan("gcp"), tls_opts("gcp")), out)
    result = run_program(out, {})
    assert result["error"] is None
    [address] = by_type(result, "gcp:compute/address:Address")
    assert address["inputs"]["region"] == "us-central1"
    [vm] = by_type(result, "gcp:compute/instance:Instance")
    nic = vm["inputs"]["networkInterfaces"][0]
    # the VM takes the static address the domain's DNS record points at
    assert nic["accessConfigs"] == [{"natIp": "203.0.113.21"}]
    # a changed startup script replaces the VM: the old one must let go of the address first,
    # or the new one fails with "External IP address ... is already in-use" (pulumi/pulumi#4128)
    assert vm["delete_before_replace"] is True
    assert result["exports"]["endpoint"] == f"https://{DOMAIN}/v1"
    assert result["exports"]["address"] == "203.0.113.21"
    rules = {
        f["name"]: (f["inputs"]["allows"][0]["ports"], f["inputs"]["sourceRanges"])
        for f in by_type(result, "gcp:compute/firewall:Firewall")
    }
    # clients reach 443 from their networks only; port 80 from anywhere (Let's Encrypt's
    # validators are not published); the proxy's plain-HTTP port is not opened at all
    assert rules == {"vllm": (["443"], [CIDR]), "vllm-acme": (["80"], ["0.0.0.0/0"])}
    check_tls_boot(vm["inputs"]["metadataStartupScript"])
    readme = (out / "README.md").read_text()
    assert "## HTTPS" in readme and "Not encrypted" not in readme
    assert f"DNS `A` record for `{DOMAIN}`" in readme and "port 80 is open" in readme
    # restarting Caddy before DNS is right burns production's failed-validation limit
    assert "5 failed validations" in readme and f"only after `dig +short {DOMAIN}`" in readme
    assert "The old VM is deleted first (a static address\n" in readme


def test_gcp_without_a_domain_is_unchanged_plain_http(tmp_path):
    out = tmp_path / "plain"
    write_project(render_project(make_plan("gcp"), ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    assert not by_type(result, "gcp:compute/address:Address")
    assert result["exports"]["endpoint"] == "http://203.0.113.20:8000/v1"
    [vm] = by_type(result, "gcp:compute/instance:Instance")
    assert vm["delete_before_replace"] is False  # an ephemeral address: replaced as usual
    files = boot_files(vm["inputs"]["metadataStartupScript"])
    assert CADDY not in files and "gpuplan-tls" not in vm["inputs"]["metadataStartupScript"]
    readme = (out / "README.md").read_text()
    assert "Not encrypted" in readme and "deleted first" not in readme


def test_gcp_multi_node_serves_https_on_the_head_only(tmp_path):
    plan = multi_node_plan("gcp", "a3-highgpu-8g", "h100-sxm")
    out = tmp_path / "mn"
    write_project(render_project(plan, tls_opts("gcp")), out)
    result = run_program(out, {})
    assert result["error"] is None
    instances = by_type(result, "gcp:compute/instance:Instance")
    # the head holds the static address; every node holds a place in a placement policy made
    # for exactly `nodes` VMs: a replacement made before the old VM is gone would not fit
    assert [r["delete_before_replace"] for r in instances] == [True, True]
    vms = {r["name"]: r["inputs"] for r in instances}
    check_tls_boot(vms["vllm"]["metadataStartupScript"])
    assert vms["vllm"]["networkInterfaces"][0]["accessConfigs"] == [{"natIp": "203.0.113.21"}]
    assert CADDY not in boot_files(vms["worker-1"]["metadataStartupScript"])


def test_hetzner_https_firewall_and_exports(tmp_path):
    from tests.iptables import Firewall

    out = tmp_path / "hetzner"
    write_project(render_project(make_plan("hetzner"), tls_opts("hetzner")), out)
    result = run_program(out, {**HETZNER_CONFIG, "gpuplan:robotTestMode": "false"})
    assert result["error"] is None
    assert result["exports"]["endpoint"] == f"https://{DOMAIN}/v1"
    assert result["exports"]["address"] == "198.51.100.30"
    [cmd] = by_type(result, "command:remote:Command")
    script = cmd["inputs"]["create"]
    files = check_tls_boot(script)
    host = Firewall()
    host.run_script(files["/opt/gpuplan/firewall.sh"])
    inside, outside = probes(CIDR)
    for src in inside:
        assert host.verdict(src, 443) == "ACCEPT"
    for src in outside:
        assert host.verdict(src, 443) == "DROP"  # HTTPS only from --allow-cidr
        assert host.verdict(src, 80) == "ACCEPT"  # Let's Encrypt's validation, from anywhere
        assert host.verdict(src, 22) == "DROP"
        assert host.verdict(src, 8000) == "DROP"  # the proxy, behind Caddy
    # still test mode by default: no server, no endpoint to claim
    test_mode = run_program(out, HETZNER_CONFIG)
    assert test_mode["exports"]["endpoint"] == "" and "address" not in test_mode["exports"]


@pytest.mark.parametrize(
    ("provider", "reason", "hint"),
    [
        ("vast", "random public ports", "choose a plan on Google Cloud and Hetzner"),
        ("runpod", "its own proxy address", "already serves HTTPS at its own address"),
        ("aws", "ACM certificate", "add --tls-certificate"),
    ],
)
def test_a_domain_alone_is_refused_where_the_machine_cannot_get_a_certificate(
    provider, reason, hint
):
    with pytest.raises(UsageError, match=reason) as err:
        render_project(make_plan(provider), tls_opts(provider))
    assert hint in err.value.hint


@pytest.mark.parametrize("provider", ["gcp", "hetzner"])
def test_replicas_cannot_share_one_machine_certificate(provider):
    with pytest.raises(UsageError, match="3 replicas") as err:
        render_project(replica_plan(provider), tls_opts(provider))
    assert "--max-replicas 1" in err.value.hint and "choose a plan on" not in err.value.hint


def test_generate_skips_plans_that_cannot_serve_the_domain():
    from planner.app.project import best_writable

    plans = [make_plan("vast"), make_plan("runpod"), make_plan("hetzner")]
    chosen, skipped = best_writable(plans, tls_opts("hetzner"))
    assert chosen.offer.provider == "hetzner"
    assert len(skipped) == 2 and "random public ports" in skipped[0]
    chosen, skipped = best_writable(plans, ProjectOptions(allowed_cidrs=(CIDR,)))
    assert chosen.offer.provider == "vast" and not skipped


def test_plans_ruled_out_only_by_the_tls_options_are_the_users_to_fix():
    from dataclasses import replace

    from planner.app.project import best_writable
    from planner.errors import DeployError

    # every plan writable but for --tls-domain: a usage error (exit 2) saying what to change
    with pytest.raises(UsageError, match="with these TLS options: 2 x Vast") as err:
        best_writable([make_plan("vast"), make_plan("vast")], tls_opts("vast"))
    assert err.value.exit_code == 2 and "drop the TLS options" in err.value.hint
    plan = make_plan("vast")
    spot = replace(plan, need=replace(plan.need, spot=True))  # Vast.ai: not rented as spot
    # mixed with plans stopped for their own reasons: only the TLS reasons are named
    with pytest.raises(UsageError) as err:
        best_writable([spot, spot, plan], tls_opts("vast"))
    assert "random public ports" in err.value.message and "spot" not in err.value.message
    # plans gpuplan cannot write whatever the options: its own limit (exit 5)
    with pytest.raises(DeployError, match="generated yet: 2 x gpuplan does not rent interrupt"):
        best_writable([spot, spot], tls_opts("vast"))


def test_warnings_say_when_https_starts():
    from infra.targets import warnings

    gcp = warnings(make_plan("gcp"), tls_opts("gcp"))
    assert not any("plain HTTP" in w for w in gcp)
    assert any("DNS A record" in w and "port 80" in w for w in gcp)
    plain = warnings(make_plan("gcp"), ProjectOptions(allowed_cidrs=(CIDR,)))
    assert any("plain HTTP" in w and "--tls-domain" in w for w in plain)
    # where gpuplan cannot give HTTPS, the warning says why
    vast = warnings(make_plan("vast"), ProjectOptions(allowed_cidrs=(CIDR,)))
    assert any("plain HTTP" in w and "random public ports" in w for w in vast)


@pytest.mark.parametrize(
    "domain",
    ["llm.example.com\n}\n:80 {", "llm.example.com {", "*.example.com", "LLM.example.com x", ""],
)
def test_the_domain_cannot_change_the_caddy_configuration(domain):
    with pytest.raises(UsageError):
        render_project(
            make_plan("gcp"), ProjectOptions(allowed_cidrs=(CIDR,), tls_domain=domain or " ")
        )
    # the machine's own module refuses it too (the program is the user's to edit)
    with pytest.raises(ValueError):
        extras_module().caddyfile(domain, 8000)


def test_tls_projects_are_deterministic(tmp_path):
    first = render_project(make_plan("gcp"), tls_opts("gcp"))
    assert first == render_project(make_plan("gcp"), tls_opts("gcp"))
    out = tmp_path / "gcp"
    write_project(first, out)
    one, two = run_program(out, {}), run_program(out, {})
    scripts = [
        by_type(r, "gcp:compute/instance:Instance")[0]["inputs"]["metadataStartupScript"]
        for r in (one, two)
    ]
    assert scripts[0] == scripts[1]  # a second `pulumi up` sees the same startup script
    assert json.dumps(one["exports"], sort_keys=True) == json.dumps(two["exports"], sort_keys=True)


def test_a_spot_head_with_a_domain_keeps_its_address():
    """Multi-node spot VMs stay stopped when preempted: the head keeps its address with a
    domain (a reserved one), not without. Single spot VMs always keep theirs
    (tests/test_gcp_spot.py)."""
    from dataclasses import replace

    plan = multi_node_plan("gcp", "a3-highgpu-8g", "h100-sxm")
    spot = replace(plan, need=replace(plan.need, spot=True))
    tls = " ".join(render_project(spot, tls_opts("gcp"))["README.md"].split())
    assert "keeps its static address" in tls and "address may change" not in tls
    plain = render_project(spot, ProjectOptions(allowed_cidrs=(CIDR,)))["README.md"]
    assert "address may change" in " ".join(plain.split())


def test_caddy_restarts_only_when_its_files_changed(tmp_path):
    # Every Caddy start asks Let's Encrypt's production service first, which refuses a domain
    # for an hour after 5 failed validations: a re-run of the boot script (a reboot on GCP, the
    # SSH command on Hetzner) with the same files only makes sure the enabled unit runs.
    extras = extras_module()
    files = tuple(str(tmp_path / name) for name in ("Caddyfile", "run-tls.sh", "unit"))
    log = tmp_path / "log"

    def boot(content: str) -> str:
        script = "\n".join([
            "set -euo pipefail",
            f'systemctl() {{ echo "$*" >> {log}; }}',
            extras.fingerprint("tls_before", files),
            *(f"echo {content} > {f}" for f in files),
            extras.fingerprint("tls_after", files),
            extras.TLS_START,
        ])  # fmt: skip
        subprocess.run(["bash", "-c", script], check=True, timeout=30)
        calls = log.read_text().splitlines()
        log.unlink()
        return calls[-1]

    assert boot("a") == "restart gpuplan-tls.service"  # first boot: no files yet
    assert boot("a") == "start gpuplan-tls.service"  # same files: no new attempt
    assert boot("b") == "restart gpuplan-tls.service"  # a changed domain or image
