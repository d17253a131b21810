"""deploy/ says what the issue and the threat model ask, and stays in step with the code.

The schema and policy checks (kubernetes-validate, checkov, yamllint) run in
deploy/checks.sh from .ci/run; these tests check what those tools do not know:
our own rules (secrets only by reference, streaming proxy, one-shot
migrations) and that every metric the rules and the dashboard use exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"


def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def pod_specs() -> list[tuple[str, dict]]:
    out = []
    for doc in manifests():
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]))
    return out


def test_no_secret_values_in_the_manifests():
    kinds = {d["kind"] for d in manifests()}
    assert "Secret" not in kinds
    for name, pod in pod_specs():
        for container in pod["containers"]:
            assert "env" not in container, f"{name}: settings come from the ConfigMap, secrets from files"
        secrets = [v for v in pod["volumes"] if v["name"] == "secrets"]
        assert secrets and all("secret" in s for s in secrets[0]["projected"]["sources"]), name


def test_every_pod_is_locked_down():
    for name, pod in pod_specs():
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsUser"] >= 10000, name
            assert {"requests", "limits"} <= set(c["resources"]), name


def test_the_deployment_runs_two_replicas_with_probes_and_a_disruption_budget():
    deployment = next(d for d in manifests() if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["args"] == ["serve"]
    pdb = next(d for d in manifests() if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    jobs = {d["kind"]: d for d in manifests() if d["kind"] in ("Job", "CronJob")}
    assert jobs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    cron = jobs["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["retention", "run"]
    config = next(d for d in manifests() if d["kind"] == "ConfigMap")["data"]
    assert config["PHIGATE_RETENTION_RUN_INTERVAL_SECONDS"] == "0"  # the CronJob runs it, not the replicas
    assert config["PHIGATE_TRUSTED_PROXIES"] and config["PHIGATE_WORKERS"] == "1"


def test_the_network_policy_denies_by_default_and_lets_out_only_dns_postgresql_s3_and_kms():
    policies = {d["metadata"]["name"]: d["spec"] for d in manifests() if d["kind"] == "NetworkPolicy"}
    deny = policies.pop("default-deny")
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    (gateway,) = policies.values()
    ports = sorted({p["port"] for rule in gateway["egress"] for p in rule["ports"]})
    assert ports == [53, 443, 5432]
    assert all(
        "ipBlock" not in peer or peer["ipBlock"]["cidr"] != "0.0.0.0/0"
        for rule in gateway["egress"]
        for peer in rule["to"]
    )
    inbound = sorted(p["port"] for rule in gateway["ingress"] for p in rule["ports"])
    assert inbound == [8000, 9100]


def test_the_ingress_terminates_tls_and_streams():
    ingress = next(d for d in manifests() if d["kind"] == "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_compose_two_hardened_replicas_behind_tls_with_one_shot_migrations():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    gateway, migrate, proxy = services["gateway"], services["migrate"], services["proxy"]
    assert gateway["deploy"]["replicas"] == 2
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("gateway", "migrate", "proxy"):
        svc = services[name]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
    assert gateway["user"].split(":")[0] != "0"
    assert gateway["environment"]["PHIGATE_TRUSTED_PROXIES"]
    assert "secrets" in gateway and gateway["environment"]["PHIGATE_SECRETS_DIR"] == "/run/secrets"
    assert services["postgres"]["networks"] == ["backend"] and compose["networks"]["backend"]["internal"] is True
    assert "8443" in " ".join(proxy["ports"])
    assert services["moto"]["profiles"] == ["local-test"]  # the S3/KMS stand-in never starts by default


def test_nginx_tls_only_modern_and_uploads_never_buffered():
    tls = (DEPLOY / "nginx/snippets/tls.conf").read_text()
    assert re.search(r"^ssl_protocols TLSv1\.2 TLSv1\.3;$", tls, re.M)
    proxy = (DEPLOY / "nginx/snippets/proxy.conf").read_text()
    for line in (
        "proxy_request_buffering off;",
        "proxy_buffering off;",
        "proxy_max_temp_file_size 0;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "add_header Strict-Transport-Security",
    ):
        assert line in proxy
    site = (DEPLOY / "nginx/phigate.conf").read_text()
    assert "include /etc/nginx/snippets/tls.conf;" in site and "include /etc/nginx/snippets/proxy.conf;" in site
    assert "return 308 https://" in site


def test_dockerfile_multi_stage_non_root_with_health_check():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2 and all("slim" in s for s in stages)
    final = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert 'ENTRYPOINT ["phigate"]' in final and 'CMD ["serve"]' in final
    assert not re.search(r"apt-get install|gcc|build-essential", final)
    assert "COPY --from=build /opt/phigate /opt/phigate" in final


def _metric_names() -> set[str]:
    from prometheus_client import REGISTRY

    import gateway.metrics  # noqa: F401 - registers the metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    names |= {
        "phigate_audit_checkpoint_age_seconds",
        "phigate_audit_queue_oldest_seconds",
        "up",
    }  # read from the database at scrape time; Prometheus's
    return names


@pytest.mark.parametrize("path", ["prometheus/alerts.yaml", "grafana/phigate-dashboard.json"])
def test_rules_and_dashboard_use_only_metrics_the_gateway_exports(path):
    text = (DEPLOY / path).read_text()
    if path.endswith(".json"):
        exprs = [t["expr"] for p in json.loads(text)["panels"] for t in p["targets"]]
    else:
        exprs = [r["expr"] for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\b(phigate_[a-z_]+|up)\b(?=\s*[{\[)])", e)}
    assert used and used <= _metric_names(), used - _metric_names()


def test_ci_runs_the_static_checks_offline_from_pinned_requirements():
    ci = (DEPLOY.parent / ".ci/run").read_text()
    assert "deploy/checks.sh" in ci
    reqs = (DEPLOY / "checks-requirements.txt").read_text().splitlines()
    pins = [r for r in reqs if r and not r.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+", r) for r in pins)
    assert {"checkov", "kubernetes-validate", "yamllint"} <= {r.split("==")[0].lower() for r in pins}
