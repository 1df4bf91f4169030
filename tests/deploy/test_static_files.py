"""The files in deploy/ are valid for the tools that consume them, checked offline:
promtool for the Prometheus configuration and alert rules (plus unit tests of the alerts),
kubernetes-validate for the manifests, the Compose specification's JSON schema for the
compose file, and structural checks of the Dockerfile, the dashboard and the systemd unit."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, K8S_VERSION, REPO, run, venv_tool
from tests.deploy.promql import as_promql, dashboard_exprs, rule_exprs

PROMETHEUS_CONFIGS = sorted((DEPLOY / "prometheus").glob("prometheus*.yml"))
MANIFESTS = sorted((DEPLOY / "k8s").rglob("*.yaml"))


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
def test_promtool_accepts_the_prometheus_config(promtool: str, config: Path) -> None:
    r = run(promtool, "check", "config", str(config))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    r = run(promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    names = {name for name, _ in rule_exprs(DEPLOY / "prometheus" / "alerts.yml")}
    for wanted in (
        "MdtpNodeDown",
        "MdtpNoNewBlock",
        "MdtpViewChangeStorm",
        "MdtpNodeLagging",
        "MdtpPeerRefusalSpike",
        "MdtpChunkRefusalSpike",
        "MdtpDiskFilling",
    ):
        assert wanted in names


def test_alerts_fire_as_their_unit_tests_specify(promtool: str) -> None:
    r = run(promtool, "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = list(dashboard_exprs(DEPLOY / "grafana" / "dashboards" / "mdtp.json"))
    assert len(exprs) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"mdtp:dashboard:{i}", "expr": as_promql(expr)}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    r = run(promtool, "check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_and_its_provisioning_fit_together() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mdtp.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/mdtp.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{providers['providers'][0]['options']['path']}:ro" in mounts


def test_every_kubernetes_manifest_validates() -> None:
    tool = venv_tool("kubernetes-validate")
    r = run(tool, "--strict", "--kubernetes-version", K8S_VERSION, *map(str, MANIFESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    for manifest in MANIFESTS:
        assert f"{manifest} passed" in r.stdout, r.stdout


def test_every_member_has_a_statefulset_with_probes_volume_and_secret() -> None:
    docs = [
        d
        for p in MANIFESTS
        if "templates" not in p.parts
        for d in yaml.safe_load_all(p.read_text())
    ]
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    assert set(by_kind["StatefulSet"]) == {"node0", "node1", "node2", "node3"}
    for name, sts in by_kind["StatefulSet"].items():
        assert sts["spec"]["replicas"] == 1
        pod = sts["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "home"
        secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
        assert secrets == [f"mdtp-{name}"]
        # genesis advertises the member by the name of its headless Service
        service = by_kind["Service"][name]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert sts["spec"]["serviceName"] == name


def test_kubernetes_never_exposes_the_metrics_port_on_all_interfaces() -> None:
    docs = [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]
    statefulsets = [d for d in docs if d["kind"] == "StatefulSet"]
    assert statefulsets
    for sts in statefulsets:
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["MDTP_METRICS_LISTEN"]["value"] == "$(POD_IP):26602"
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    metrics_rules = [
        rule
        for rule in policy["spec"]["ingress"]
        if any(port["port"] == 26602 for port in rule["ports"])
    ]
    assert metrics_rules and all(rule.get("from") for rule in metrics_rules)


def test_compose_file_follows_the_compose_specification() -> None:
    tool = venv_tool("check-jsonschema")
    compose = DEPLOY / "compose" / "docker-compose.yml"
    r = run(tool, "--builtin-schema", "vendor.compose-spec", str(compose))
    assert r.returncode == 0, r.stdout + r.stderr
    services = yaml.safe_load(compose.read_text())["services"]
    assert {"node0", "node1", "node2", "node3", "prometheus", "grafana"} <= set(services)
    for i in range(4):
        assert services[f"node{i}"]["volumes"] == [f"./homes/node{i}:/var/lib/mdtp"]
    prom_mounts = " ".join(services["prometheus"]["volumes"])
    assert (
        "../prometheus/prometheus.yml" in prom_mounts and "../prometheus/alerts.yml" in prom_mounts
    )
    # the compose scrape config names exactly the compose members
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "mdtp"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"node{i}:26602" for i in range(4)}


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_the_node_unprivileged_with_a_healthcheck() -> None:
    instructions = _dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    final = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    (entry,) = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    assert entry == ["mdtp", "start", "--home", "/var/lib/mdtp"]
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/healthz" in health
    exposed = {p for word, rest in final if word == "EXPOSE" for p in rest.split()}
    assert exposed == {"26600", "26601", "26602"}
    for word, rest in instructions:  # everything copied exists in the build context
        if word == "COPY" and "--from" not in rest:
            for src in [a for a in rest.split() if not a.startswith("--")][:-1]:
                assert (REPO / src).exists(), src


def test_systemd_unit_is_hardened_and_verifies() -> None:
    unit = (DEPLOY / "systemd" / "mdtp.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["User"] == "mdtp"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["Restart"] == "on-failure"
    assert int(settings["LimitNOFILE"]) >= 65536
    assert settings["ExecStart"].endswith("mdtp start --home /var/lib/mdtp")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # optional: the structural test above always runs
        pytest.skip("systemd-analyze not installed")
    mdtp = venv_tool("mdtp")
    unit = tmp_path / "mdtp.service"
    text = (DEPLOY / "systemd" / "mdtp.service").read_text()
    unit.write_text(text.replace("/opt/mdtp/bin/mdtp", mdtp))
    r = run(analyze, "verify", str(unit))
    assert r.returncode == 0, r.stdout + r.stderr


DAEMON_FILES = {
    "config.toml",
    "genesis.json",
    "ca.pem",
    "node.pem",
    "node.key.pem",
    "node_key.json",
}


def _mdtp_env(mdtp: str, **extra: str) -> list[str]:
    return [
        "env",
        f"MDTP={mdtp}",
        f"PATH={Path(mdtp).parent}:/usr/bin:/bin",
        *(f"{k}={v}" for k, v in extra.items()),
    ]


def test_consortium_init_writes_homes_that_name_members_by_host(tmp_path: Path) -> None:
    mdtp = venv_tool("mdtp")
    script = DEPLOY / "scripts" / "consortium-init.sh"
    out = tmp_path / "homes"
    (tmp_path / "pass").write_text("ca secret\n")
    env = _mdtp_env(mdtp, MDTP_CA_PASSPHRASE_FILE=str(tmp_path / "pass"))
    r = run(
        *env,
        "bash",
        str(script),
        str(out),
        "c1",
        "a.example",
        "b.example",
        "c.example",
        "d.example",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    genesis = json.loads((out / "genesis.json").read_text())
    members = genesis["members"]
    assert [m["id"] for m in members] == ["node0", "node1", "node2", "node3"]
    assert [m["p2p"] for m in members] == [f"{h}.example:26600" for h in "abcd"]
    assert (out / "ca" / "ca.key.pem").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    for i in range(4):
        home = out / f"node{i}"
        # a node home holds only what the daemon reads: no admin key, nothing of the CA's key
        assert {p.name for p in home.iterdir()} == DAEMON_FILES | {"data"}
        assert (home / "genesis.json").read_text() == (out / "genesis.json").read_text()
        assert (home / "node_key.json").stat().st_mode & 0o077 == 0
        assert (out / "admins" / f"node{i}" / "admin_key.json").stat().st_mode & 0o077 == 0
        assert 'listen = "0.0.0.0:26602"' in (home / "config.toml").read_text()
    again = run(*env, "bash", str(script), str(out), "c1", "a", "b", "c", "d")
    assert again.returncode == 2 and "already holds a consortium" in again.stderr


def test_members_make_their_keys_and_the_ca_operator_signs_requests_only(tmp_path: Path) -> None:
    mdtp = venv_tool("mdtp")
    scripts = DEPLOY / "scripts"
    (tmp_path / "pass").write_text("ca secret\n")
    operator = tmp_path / "operator"
    r = run(
        mdtp,
        "ca",
        "init",
        "--out",
        str(operator / "ca"),
        "--passphrase-file",
        str(tmp_path / "pass"),
    )
    assert r.returncode == 0, r.stderr
    requests = []
    for node_id in ("acme", "beta", "gamma", "delta"):
        home = tmp_path / node_id / "home"
        r = run(
            *_mdtp_env(mdtp, MDTP_HOSTS="10.0.0.7"),
            "bash",
            str(scripts / "member-init.sh"),
            str(home),
            node_id,
            f"{node_id}.example",
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / node_id / "home-admin" / "admin_key.json").exists()
        requests.append(tmp_path / node_id / "home-request")
        # only public files travel to the CA operator
        assert {p.name for p in requests[-1].iterdir()} == {"node.csr.pem", "member.json"}
    env = _mdtp_env(mdtp, MDTP_CA_PASSPHRASE_FILE=str(tmp_path / "pass"))
    out = operator / "out"
    r = run(
        *env,
        "bash",
        str(scripts / "ca-sign.sh"),
        str(operator / "ca"),
        "c2",
        str(out),
        *map(str, requests),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [p for p in operator.rglob("*") if p.name in ("admin_key.json", "node.key.pem")]
    for node_id in ("acme", "beta", "gamma", "delta"):
        back = out / node_id
        assert {p.name for p in back.iterdir()} == {"node.pem", "ca.pem", "genesis.json"}
        home = tmp_path / node_id / "home"
        r = run(
            mdtp,
            "install-cert",
            "--home",
            str(home),
            "--cert",
            str(back / "node.pem"),
            "--ca-cert",
            str(back / "ca.pem"),
            "--genesis",
            str(back / "genesis.json"),
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert {p.name for p in home.iterdir()} == DAEMON_FILES | {"data"}
    # a wrong CA passphrase signs nothing
    (tmp_path / "wrong").write_text("nope\n")
    env = _mdtp_env(mdtp, MDTP_CA_PASSPHRASE_FILE=str(tmp_path / "wrong"))
    r = run(
        *env,
        "bash",
        str(scripts / "ca-sign.sh"),
        str(operator / "ca"),
        "c3",
        str(operator / "out3"),
        str(requests[0]),
    )
    assert r.returncode != 0 and "wrong passphrase" in r.stderr


def test_kubernetes_secrets_hold_only_what_the_daemon_reads(tmp_path: Path) -> None:
    mdtp = venv_tool("mdtp")
    out = tmp_path / "homes"
    r = run(
        *_mdtp_env(mdtp),
        "bash",
        str(DEPLOY / "scripts" / "consortium-init.sh"),
        str(out),
        "c1",
        "node0",
        "node1",
        "node2",
        "node3",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    kubectl = tmp_path / "kubectl"  # prints what it was asked to put into each object
    kubectl.write_text('#!/bin/sh\necho "$@"\n')
    kubectl.chmod(0o755)
    r = run(
        "env",
        f"KUBECTL={kubectl}",
        "DRY_RUN=1",
        "bash",
        str(DEPLOY / "k8s" / "create-secrets.sh"),
        str(out),
        "node0",
        "node1",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    secrets = [line for line in r.stdout.splitlines() if line.startswith("create secret")]
    assert len(secrets) == 2
    daemon = DAEMON_FILES - {"genesis.json"}  # genesis comes from the shared ConfigMap
    for line in secrets:
        keys = {a.split("=", 1)[1] for a in line.split() if a.startswith("--from-file=")}
        assert {k.split("=", 1)[0] for k in keys} == daemon
    template = yaml.safe_load(
        (DEPLOY / "k8s" / "templates" / "secret-member.template.yaml").read_text()
    )
    assert set(template["stringData"]) == daemon
    for manifest in sorted((DEPLOY / "k8s").glob("statefulset-*.yaml")):
        (sts,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "StatefulSet"]
        (init,) = sts["spec"]["template"]["spec"]["initContainers"]
        copied = re.search(r"for f in ([^;]+);", init["args"][0])
        assert copied is not None and set(copied.group(1).split()) == daemon
