"""Static checks of the deployment files in deploy/ (no Docker engine, cluster or promtool needed).

What can be checked without running anything: every YAML/JSON file parses; the compose stack has the
services the pipeline needs and they are wired to each other (brokers, ClickHouse cluster, migrate,
workers, generator, Prometheus, Grafana); every environment variable given to the livecommerce image is
a setting that pipeline/settings.py reads; every Prometheus metric the dashboard and the alerts query is
declared in pipeline/metrics.py, with the labels it has; the ClickHouse tables the dashboard queries
exist in schemas/clickhouse; the Kubernetes manifests have probes on /health, a PVC for the state,
graceful shutdown, and take passwords only from the Secret. What these tests cannot show (the images
build, the containers start, the manifests apply) is listed in deploy/README.md.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from pipeline.metrics import Metrics
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[3]  # tests/unit/project/ -> the repository
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "livecommerce-pipeline.json"
CLUSTER = "livecommerce"
SECRET_KEYS = {"CLICKHOUSE_PASSWORD", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "WEB_AUTH_TOKEN",
               "COLLECTOR_APP_KEYS"}  # fmt: skip


# --- sources of truth: settings, metrics, ClickHouse schema ------------------------------------------


class _RecordingEnv(dict):
    """An empty environment that remembers every variable name it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default

    def __getitem__(self, key):
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        self.asked.add(key)
        return False


def setting_names() -> set[str]:
    """Variables pipeline/settings.py reads: those asked for by `Settings.from_env` with an empty
    environment, plus every upper-case name passed as a first argument in settings.py (variables read
    only in some configurations, e.g. SASL credentials)."""
    env = _RecordingEnv()
    Settings.from_env(env)
    names = set(env.asked)
    tree = ast.parse((ROOT / "pipeline" / "settings.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            literal = first.value if isinstance(first, ast.Constant) else None
            if isinstance(literal, str) and re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+", literal):
                names.add(literal)
    return names


def exported_metrics() -> dict[str, set[str]]:
    """Every series name /metrics can show -> its label names (histogram buckets add `le`)."""
    metrics = Metrics()
    out: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)
        if value._type == "counter":
            out[f"{name}_total"] = labels
        elif value._type == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = labels
            out[f"{name}_count"] = labels
        else:
            out[name] = labels
    return out


def clickhouse_objects() -> set[str]:
    """Tables and views the migrations create in the pipeline's database."""
    names: set[str] = set()
    for sql in (ROOT / "schemas" / "clickhouse").glob("*.sql"):
        text = sql.read_text(encoding="utf-8")
        names.update(re.findall(r"CREATE (?:TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS \{db\}\.(\w+)", text))
    return names


# --- file helpers -----------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def k8s_objects() -> list[dict]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objects.extend(load_yaml_docs(path))
    return objects


def k8s_object(kind: str, name: str) -> dict:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind} {name}, found {len(found)}"
    return found[0]


def livecommerce_services(spec: dict) -> dict[str, dict]:
    """Compose services running the project's image (built from deploy/Dockerfile)."""
    return {
        name: svc
        for name, svc in spec["services"].items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def workers(spec: dict) -> dict[str, dict]:
    return {
        name: svc for name, svc in livecommerce_services(spec).items() if svc.get("command") == ["worker"]
    }


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, f"unsupported duration {duration!r}"
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def host_path(service_volume: str, base: Path) -> tuple[Path | None, str]:
    """A `source:target[:mode]` volume -> (host path if it is a bind mount of a file/dir, target)."""
    source, target = service_volume.split(":")[:2]
    if source.startswith((".", "/")):
        return (base / source).resolve(), target
    return None, target


# --- PromQL -----------------------------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                 "and", "or", "unless", "inf", "nan"}  # fmt: skip


def promql_selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric name, label names it is matched or grouped by) for every selector in `expr`."""
    grouped = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        grouped.update(label.strip() for label in group.split(",") if label.strip())
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors, [$__rate_interval]
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?", text):
        name, matchers, call = match.group(1), match.group(2), match.group(3)
        if call or name in _PROMQL_WORDS or name.startswith("$"):
            continue
        if text[max(0, match.start() - 1)] == "$":  # a Grafana variable such as $__rate_interval
            continue
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers or ""))
        yield name, labels | grouped


def check_promql(expr: str, where: str) -> set[str]:
    """Assert every metric in `expr` is exported with the labels used; return the metric names."""
    exported = exported_metrics()
    target_labels = {"instance", "job", "pod", "namespace", "deployment"}  # added by Prometheus / relabeling
    names = set()
    for name, labels in promql_selectors(expr):
        if name == "up":
            continue
        assert name in exported, f"{where}: metric {name!r} is not declared in pipeline/metrics.py ({expr})"
        unknown = labels - exported[name] - target_labels
        # A `by (...)` clause may name labels of other metrics in the same expression; only flag labels
        # that no metric of the expression has.
        others = set().union(*(exported.get(n, set()) for n, _ in promql_selectors(expr)))
        assert not unknown - others, f"{where}: {name} has no label(s) {sorted(unknown - others)} ({expr})"
        names.add(name)
    return names


def test_promql_parser_finds_metrics_and_labels():
    found = dict(
        promql_selectors('sum by (table) (increase(livecommerce_sink_retries{table="raw_events"}[5m])) > 10')
    )
    assert found == {"livecommerce_sink_retries": {"table"}}
    assert dict(
        promql_selectors("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))")
    ) == {"x_bucket": {"le"}}


# --- every file parses ------------------------------------------------------------------------------


def test_every_yaml_file_in_deploy_parses():
    files = yaml_files()
    assert len(files) >= 10, files
    for path in files:
        docs = load_yaml_docs(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(doc, dict) for doc in docs), f"{path}: every document must be a mapping"


def test_every_xml_and_json_file_in_deploy_parses():
    for path in DEPLOY.rglob("*.xml"):
        if "kafka" in path.relative_to(DEPLOY).parts[:1]:
            continue  # deploy/kafka/pom.xml belongs to the local Kafka runtime
        ET.parse(path)
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))


def test_setting_names_are_found():
    names = setting_names()
    for expected in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_PASSWORD", "LIVECOMMERCE_LOCAL_DIR", "WEB_PORT"):
        assert expected in names


# --- docker compose ---------------------------------------------------------------------------------


def test_compose_has_the_services_of_the_stack():
    services = compose()["services"]
    for name in ("migrate", "generator", "prometheus", "grafana", "clickhouse-keeper"):
        assert name in services, f"compose service {name} is missing"
    assert [n for n in services if services[n].get("image", "").startswith("clickhouse/clickhouse-server")]
    assert len(workers(compose())) >= 2, "at least two workers in the consumer group"


def test_compose_kafka_is_three_kraft_brokers_of_one_cluster():
    services = compose()["services"]
    brokers = {n: s for n, s in services.items() if s.get("image") == "apache/kafka:3.9.1"}
    assert len(brokers) == 3, sorted(brokers)
    envs = {n: env_of(s) for n, s in brokers.items()}
    node_ids = {n: e["KAFKA_NODE_ID"] for n, e in envs.items()}
    assert len(set(node_ids.values())) == 3, f"node ids must differ: {node_ids}"
    assert len({e["CLUSTER_ID"] for e in envs.values()}) == 1, "all brokers need the same CLUSTER_ID"
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs.values()}
    assert len(voters) == 1
    expected = {f"{node_ids[n]}@{n}" for n in brokers}
    assert {v.rsplit(":", 1)[0] for v in voters.pop().split(",")} == expected
    for name, env in envs.items():
        assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
        advertised = env["KAFKA_ADVERTISED_LISTENERS"]
        assert f"INTERNAL://{name}:" in advertised, f"{name} must advertise its own service name"
    host_ports = [p.split(":")[0] for s in brokers.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "brokers must publish distinct host ports"


def test_compose_env_of_the_livecommerce_image_uses_only_real_settings():
    names = setting_names()
    services = livecommerce_services(compose())
    assert {"migrate", "generator"} <= set(services)
    for name, svc in services.items():
        unknown = set(env_of(svc)) - names
        assert not unknown, f"compose service {name} sets {sorted(unknown)}, not read by pipeline/settings.py"
        Settings.from_env(env_of(svc) | {"LIVECOMMERCE_LOCAL_DIR": "/tmp/livecommerce-test"})  # values valid


def test_compose_workers_point_at_the_stack():
    spec = compose()
    services = spec["services"]
    for name, svc in workers(spec).items():
        env = env_of(svc)
        for server in env["KAFKA_BOOTSTRAP_SERVERS"].split(","):
            host, port = server.rsplit(":", 1)
            assert (
                host in services
                and f"INTERNAL://{host}:{port}" in env_of(services[host])["KAFKA_ADVERTISED_LISTENERS"]
            ), f"{name}: {server} is not a broker's internal listener"
        assert urlsplit(env["CLICKHOUSE_URL"]).hostname in services
        assert int(env["KAFKA_REPLICATION_FACTOR"]) <= 3
        depends = svc["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_compose_workers_are_never_open_on_every_address():
    # Inside its container a worker binds 0.0.0.0: it must need a token (no empty default), and its
    # port is published on the host's loopback only.
    for name, svc in workers(compose()).items():
        env = env_of(svc)
        token = env["WEB_AUTH_TOKEN"]
        assert re.fullmatch(r"\$\{WEB_AUTH_TOKEN:\?[^}]+\}", token), f"{name}: WEB_AUTH_TOKEN={token!r}"
        assert env.get("WEB_ALLOW_NO_TOKEN", "0") == "0"
        for port in svc["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_workers_have_own_state_and_shut_down_gracefully():
    spec = compose()
    volumes = []
    for name, svc in workers(spec).items():
        local_dir = env_of(svc)["LIVECOMMERCE_LOCAL_DIR"]
        mounted = [v.split(":")[0] for v in svc.get("volumes", []) if v.split(":")[1] == local_dir]
        assert len(mounted) == 1, f"{name} needs a volume at LIVECOMMERCE_LOCAL_DIR={local_dir}"
        volumes.extend(mounted)
        assert mounted[0] in spec["volumes"]
        assert seconds(svc["stop_grace_period"]) >= 30
        assert svc.get("stop_signal", "SIGTERM") == "SIGTERM"
        assert "/health" in " ".join(svc["healthcheck"]["test"])
    assert len(volumes) == len(set(volumes)), "two workers must not share a RocksDB directory"


def test_compose_migrate_and_generator():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["migrate", "--cluster", CLUSTER]
    assert services["migrate"].get("restart") == "no"
    ch_deps = [d for d in services["migrate"]["depends_on"] if d.startswith("clickhouse")]
    assert ch_deps
    assert services["generator"]["command"][0] == "generate"
    assert set(services["generator"]["depends_on"]) & set(workers(compose())), "topics exist first"


def test_compose_clickhouse_cluster_config():
    services = compose()["services"]
    cluster_xml = ET.parse(COMPOSE_DIR / "clickhouse" / "config.d" / "cluster.xml").getroot()
    cluster = cluster_xml.find(f"remote_servers/{CLUSTER}")
    assert cluster is not None, f"remote_servers must define the cluster {CLUSTER!r}"
    hosts = [r.findtext("host") for r in cluster.iter("replica")]
    assert len(hosts) >= 2 and all(h in services for h in hosts)
    keeper = cluster_xml.findtext("zookeeper/node/host")
    assert keeper in services
    macros = {}
    for host in hosts:
        mounts = dict(host_path(v, COMPOSE_DIR)[::-1] for v in services[host]["volumes"])
        assert "/etc/clickhouse-server/config.d/cluster.xml" in mounts
        macro_file = mounts["/etc/clickhouse-server/config.d/macros.xml"]
        root = ET.parse(macro_file).getroot()
        macros[host] = (root.findtext("macros/shard"), root.findtext("macros/replica"))
        assert all(macros[host]), f"{host} needs shard and replica macros"
    assert len(set(macros.values())) == len(hosts), "every node needs its own (shard, replica)"


def test_compose_bind_mounts_and_build_exist():
    spec = compose()
    for name, svc in spec["services"].items():
        for volume in svc.get("volumes", []):
            path, _ = host_path(volume, COMPOSE_DIR)
            assert path is None or path.exists(), f"{name} mounts missing {path}"
        if "build" in svc:
            context = (COMPOSE_DIR / svc["build"]["context"]).resolve()
            assert context == ROOT
            assert (context / svc["build"]["dockerfile"]).is_file()


def test_dockerfile_installs_the_project():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install" in text and re.search(r"pip install [^\n]*-e \.", text)
    assert 'ENTRYPOINT ["livecommerce"]' in text
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists(), f"COPY {item}: no such path"
            assert not any(item == pat or item.startswith(pat.rstrip("/") + "/") for pat in ignored), (
                f"COPY {item} is excluded by .dockerignore"
            )
    for name in re.findall(r"^ENV ([A-Z_]+)=", text, re.MULTILINE) + re.findall(
        r"^\s+([A-Z_]+)=", text, re.MULTILINE
    ):
        if not name.startswith(("PYTHON", "PIP_")):
            assert name in setting_names(), f"Dockerfile sets {name}, not a setting"


# --- Prometheus ---------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_compose_worker():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert len(jobs) == len(set(jobs)), "job names must be unique"
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "livecommerce-worker")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    spec = compose()
    expected = {f"{name}:{env_of(svc)['WEB_PORT']}" for name, svc in workers(spec).items()}
    assert targets == expected
    mounts = dict(host_path(v, COMPOSE_DIR)[::-1] for v in spec["services"]["prometheus"]["volumes"])
    for rule_file in config["rule_files"]:
        assert rule_file in mounts and mounts[rule_file].is_file(), f"rule file {rule_file} is not mounted"


def test_prometheus_k8s_job_selects_the_worker_pods():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-k8s.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    keeps = {
        tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"
    }
    pod = k8s_object("StatefulSet", "livecommerce-worker")["spec"]["template"]
    label = pod["metadata"]["labels"]["app.kubernetes.io/name"]
    assert keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == label
    port_names = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert keeps[("__meta_kubernetes_pod_container_port_name",)] in port_names


def test_alert_rules_use_declared_metrics():
    config = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerts = [rule for group in config["groups"] for rule in group["rules"]]
    assert len({a["alert"] for a in alerts}) == len(alerts) >= 5
    for rule in alerts:
        check_promql(rule["expr"], f"alert {rule['alert']}")
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]


# --- Grafana ------------------------------------------------------------------------------------------


def dashboard_targets() -> list[tuple[dict, dict]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel, target) for panel in board["panels"] for target in panel.get("targets", [])]


def test_dashboard_loads_and_uses_provisioned_datasources():
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text(encoding="utf-8")
    )["datasources"]
    provisioned = {(d["type"], d["uid"]) for d in sources}
    used = {(t["datasource"]["type"], t["datasource"]["uid"]) for _, t in dashboard_targets()}
    used |= {(v["datasource"]["type"], v["datasource"]["uid"]) for v in board["templating"]["list"]}
    assert used <= provisioned, used - provisioned
    assert {"prometheus", "grafana-clickhouse-datasource"} <= {d["type"] for d in sources}


def test_dashboard_prometheus_queries_use_declared_metrics():
    queried = set()
    for panel, target in dashboard_targets():
        if target["datasource"]["type"] == "prometheus":
            queried |= check_promql(target["expr"], f"panel {panel['title']!r}")
    # The panels the operations issue asks for.
    for required in (
        "livecommerce_events_total",
        "livecommerce_consumer_lag",
        "livecommerce_watermark_delay_seconds",
        "livecommerce_sink_rows_written_total",
        "livecommerce_sink_insert_seconds_bucket",
        "livecommerce_sink_errors_total",
        "livecommerce_sink_backpressure",
        "livecommerce_state_open_windows",
        "livecommerce_dependency_up",
    ):
        assert required in queried, f"no dashboard panel queries {required}"


def test_dashboard_counters_are_queried_as_rates():
    for panel, target in dashboard_targets():
        if target["datasource"]["type"] != "prometheus":
            continue
        for name, _ in promql_selectors(target["expr"]):
            if name.endswith(("_total", "_bucket")):
                assert re.search(rf"(rate|increase)\({name}\b", target["expr"]), (
                    f"panel {panel['title']!r}: {name} is cumulative, query it through rate()/increase()"
                )


def test_dashboard_clickhouse_queries_read_existing_tables():
    objects = clickhouse_objects()
    assert "campaign_creator_totals" in objects
    read = set()
    for panel, target in dashboard_targets():
        if target["datasource"]["type"] == "grafana-clickhouse-datasource":
            for table in re.findall(r"\blivecommerce\.(\w+)", target["rawSql"]):
                assert table in objects, f"panel {panel['title']!r} reads unknown table {table}"
                read.add(table)
    assert "campaign_creator_totals" in read, "top creators by GMV come from campaign_creator_totals"


def test_grafana_provisioning_matches_compose():
    spec = compose()
    grafana = spec["services"]["grafana"]
    env = env_of(grafana)
    assert "grafana-clickhouse-datasource" in env.get("GF_PLUGINS_PREINSTALL_SYNC", "") + env.get(
        "GF_INSTALL_PLUGINS", ""
    )
    mounts = dict(host_path(v, COMPOSE_DIR)[::-1] for v in grafana["volumes"])
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml").read_text(encoding="utf-8")
    )["providers"]
    assert mounts[providers[0]["options"]["path"]] == DASHBOARD.parent
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text(encoding="utf-8")
    )["datasources"]
    by_type = {d["type"]: d for d in sources}
    prom_url = urlsplit(by_type["prometheus"]["url"])
    assert prom_url.hostname in spec["services"] and prom_url.port == 9090
    clickhouse = by_type["grafana-clickhouse-datasource"]
    assert clickhouse["jsonData"]["host"] in spec["services"]
    password = clickhouse["secureJsonData"]["password"]
    variable = re.fullmatch(r"\$\{?([A-Z_]+)\}?", password)
    assert variable and variable.group(1) in env, "the password comes from Grafana's environment"


# --- Kubernetes ---------------------------------------------------------------------------------------


def test_k8s_manifests_are_objects_and_the_kustomization_lists_them():
    for obj in k8s_objects():
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}, "every manifest but the secret example is applied"
    assert not any(o["kind"] == "Secret" for f in listed for o in load_yaml_docs(K8S / f))


def worker_pod() -> dict:
    return k8s_object("StatefulSet", "livecommerce-worker")["spec"]["template"]


def test_k8s_worker_probes_use_health():
    container = worker_pod()["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container[probe_name]
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] == "/health"
            assert probe["httpGet"]["port"] in port_names
        else:
            script = " ".join(probe["exec"]["command"])
            assert "/health" in script and '"ok"' in script, (
                "readiness checks the status, not only the answer"
            )
    assert "httpGet" in container["livenessProbe"], "liveness: the endpoint answers (200 even when degraded)"


def test_k8s_worker_state_shutdown_and_resources():
    sts = k8s_object("StatefulSet", "livecommerce-worker")
    pod = sts["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    container = pod["containers"][0]
    assert container["args"] == ["worker"]
    config = k8s_object("ConfigMap", "livecommerce-config")["data"]
    claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    state = mounts[config["LIVECOMMERCE_LOCAL_DIR"]]
    assert state in claims, "LIVECOMMERCE_LOCAL_DIR must be on a PersistentVolumeClaim"
    assert claims[state]["spec"]["resources"]["requests"]["storage"]
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    assert sts["spec"]["replicas"] <= int(config["TOPIC_PARTITIONS"]), "more workers than partitions idle"
    assert int(config["WEB_PORT"]) in {p["containerPort"] for p in container["ports"]}


def k8s_env_names(container: dict) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


def test_k8s_env_names_are_settings_and_secrets_come_from_the_secret():
    names = setting_names()
    config = k8s_object("ConfigMap", "livecommerce-config")["data"]
    assert set(config) <= names, f"ConfigMap keys not read by settings: {sorted(set(config) - names)}"
    assert not set(config) & SECRET_KEYS, "no secret in the ConfigMap"
    for key, value in config.items():
        assert not re.search(r"(?i)password|secret|token", key), key
        if "://" in value:
            assert "@" not in urlsplit(value).netloc, f"{key} carries credentials"
    secret_example = load_yaml_docs(K8S / "secret.example.yaml")[0]
    assert set(secret_example["stringData"]) == SECRET_KEYS
    assert names >= SECRET_KEYS
    containers = [worker_pod()["spec"]["containers"][0]]
    containers.append(k8s_object("Job", "livecommerce-migrate")["spec"]["template"]["spec"]["containers"][0])
    for container in containers:
        assert k8s_env_names(container) <= names
        assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == ["livecommerce-config"]
        for env in container.get("env", []):
            assert "value" not in env, f"{env['name']}: literal value in the pod spec"
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret_example["metadata"]["name"] and ref["key"] == env["name"]
        assert "CLICKHOUSE_PASSWORD" in k8s_env_names(container)
    worker_env = k8s_env_names(containers[0])
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "WEB_AUTH_TOKEN"} <= worker_env
    Settings.from_env(
        config | {"CLICKHOUSE_PASSWORD": "x", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    )


def test_k8s_migrate_job_runs_the_cluster_migration():
    job = k8s_object("Job", "livecommerce-migrate")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert pod["containers"][0]["args"] == ["migrate", "--cluster", CLUSTER]
    assert pod["containers"][0]["image"] == worker_pod()["spec"]["containers"][0]["image"]


def test_k8s_services_select_the_workers():
    labels = worker_pod()["metadata"]["labels"]
    port_names = {p["name"] for p in worker_pod()["spec"]["containers"][0]["ports"]}
    services = [o for o in k8s_objects() if o["kind"] == "Service" and o["metadata"]["name"] != COLLECTOR]
    assert services
    for svc in services:
        assert svc["spec"]["selector"].items() <= labels.items()
        assert all(p["targetPort"] in port_names for p in svc["spec"]["ports"])
    sts = k8s_object("StatefulSet", "livecommerce-worker")
    headless = k8s_object("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_k8s_kustomization_renders():
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)
    assert kinds == sorted(["Namespace", "ConfigMap", "Job", "StatefulSet", "Service", "Service",
                            "PodDisruptionBudget", "Deployment", "Service",
                            "HorizontalPodAutoscaler"])  # fmt: skip


COLLECTOR = "livecommerce-collector"
SASL = {"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}


def collector_container() -> dict:
    return k8s_object("Deployment", COLLECTOR)["spec"]["template"]["spec"]["containers"][0]


def test_k8s_collector_is_a_scaled_deployment_behind_a_service():
    deployment = k8s_object("Deployment", COLLECTOR)
    pod = deployment["spec"]["template"]
    container = collector_container()
    assert container["args"] == ["collector"]
    assert container["image"] == worker_pod()["spec"]["containers"][0]["image"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    config = k8s_object("ConfigMap", "livecommerce-config")["data"]
    assert int(config["COLLECTOR_PORT"]) in {p["containerPort"] for p in container["ports"]}
    # Readiness on /health (503 until Kafka is connected); liveness must not depend on Kafka.
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert (
        "httpGet" not in container["livenessProbe"]
        or container["livenessProbe"]["httpGet"]["path"] != "/health"
    )
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > Settings.from_env(config | SASL).collector_produce_timeout_s + 5, (
        "in-flight uploads get answers"
    )
    service = k8s_object("Service", COLLECTOR)
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {p["name"] for p in container["ports"]}
    hpa = k8s_object("HorizontalPodAutoscaler", COLLECTOR)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": COLLECTOR}
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_k8s_collector_listens_publicly_only_with_app_keys_from_the_secret():
    from pipeline.collector.limits import CollectorConfigError, check_startup

    config = k8s_object("ConfigMap", "livecommerce-config")["data"]
    container = collector_container()
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert all("value" not in e for e in container["env"])
    assert refs["COLLECTOR_APP_KEYS"]["name"] == "livecommerce-secrets"
    assert not refs["COLLECTOR_APP_KEYS"].get("optional"), "a collector pod without keys must not start"
    assert set(refs) <= setting_names() and set(config) <= setting_names()
    with pytest.raises(CollectorConfigError):  # what a pod would do without the Secret's keys
        check_startup(Settings.from_env(config | SASL))
    check_startup(Settings.from_env(config | SASL | {"COLLECTOR_APP_KEYS": "web=" + "k" * 32}))
