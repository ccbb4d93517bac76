#!/usr/bin/env python3
"""Checks the Kubernetes examples under deploy/kubernetes/ without a cluster and without a network.

    validate.py [--tollgate PATH] [--kubernetes-version X.Y.Z]

1. Schema: every document against the Kubernetes OpenAPI schemas, strictly (unknown fields are
   errors), with the PyPI package kubernetes-validate, which ships the schemas inside it (nothing is
   downloaded). The Prometheus Operator's PodMonitor and ServiceMonitor are not in those schemas:
   their fields are checked here against the few this repository uses.
2. Wiring: selectors match pod labels, every named port a Service, probe or monitor uses exists,
   every ConfigMap and Secret referenced is defined, probes ask /readyz and /healthz on the admin
   port, and each ConfigMap's tollgate.toml listens where the containers and probes expect it, with
   `[shared] replicas` equal to the Deployment's replicas when there are several.
3. Config: with --tollgate, `tollgate check` runs on each ConfigMap's tollgate.toml with exactly the
   environment its Deployment gives the container (the Secret's values and the plain `env`).

Needs PyYAML (Debian python3-yaml) and kubernetes-validate (`pip install kubernetes-validate`);
.ci/run installs both. Exits 1 listing every problem, or prints one summary line.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

try:
    import kubernetes_validate
except ImportError:  # reported in main(): the schema check is not optional
    kubernetes_validate = None

ROOT = Path(__file__).resolve().parent / "kubernetes"
ADMIN_PORT = 9180

# The Prometheus Operator fields these examples may use (monitoring.coreos.com/v1).
MONITOR_SPEC = {
    "ServiceMonitor": ("endpoints", {"selector", "endpoints", "namespaceSelector", "jobLabel",
                                     "targetLabels", "podTargetLabels", "sampleLimit"}),
    "PodMonitor": ("podMetricsEndpoints", {"selector", "podMetricsEndpoints", "namespaceSelector",
                                           "jobLabel", "podTargetLabels", "sampleLimit"}),
}
ENDPOINT_KEYS = {"port", "targetPort", "path", "interval", "scrapeTimeout", "scheme", "relabelings",
                 "metricRelabelings", "honorLabels"}


class Problems(list):
    def add(self, where, message):
        self.append(f"{where}: {message}")


def load(paths):
    """(file, document) for every non-empty YAML document of the files."""
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    docs.append((path.relative_to(ROOT.parent.parent), doc))
    return docs


def name_of(doc):
    return f"{doc.get('kind', '?')}/{doc.get('metadata', {}).get('name', '?')}"


def check_schema(docs, version, problems):
    for path, doc in docs:
        where = f"{path} {name_of(doc)}"
        for key in ("apiVersion", "kind", "metadata"):
            if key not in doc:
                problems.add(where, f"no {key}")
        if doc.get("kind") in MONITOR_SPEC:
            check_monitor(doc, where, problems)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.add(where, f"{'.'.join(str(p) for p in e.path)}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            problems.add(where, f"no schema: {e}")


def check_monitor(doc, where, problems):
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.add(where, f"apiVersion {doc.get('apiVersion')}, not monitoring.coreos.com/v1")
    endpoints_key, allowed = MONITOR_SPEC[doc["kind"]]
    spec = doc.get("spec") or {}
    for key in set(spec) - allowed:
        problems.add(where, f"unknown field spec.{key}")
    if not (spec.get("selector") or {}).get("matchLabels"):
        problems.add(where, "spec.selector.matchLabels is required here")
    endpoints = spec.get(endpoints_key) or []
    if not endpoints:
        problems.add(where, f"spec.{endpoints_key} is empty")
    for i, ep in enumerate(endpoints):
        for key in set(ep) - ENDPOINT_KEYS:
            problems.add(where, f"unknown field spec.{endpoints_key}[{i}].{key}")
        if not isinstance(ep.get("port"), str):
            problems.add(where, f"spec.{endpoints_key}[{i}].port must name a port")
        if ep.get("path") != "/metrics":
            problems.add(where, f"spec.{endpoints_key}[{i}].path is {ep.get('path')}, not /metrics")


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_containers(deployment):
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("containers", []) + spec.get("initContainers", [])


def named_ports(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def check_wiring(docs, problems):
    by_kind = {}
    for path, doc in docs:
        by_kind.setdefault(doc.get("kind"), []).append((path, doc))
    names = {(d.get("kind"), d["metadata"]["name"]) for _, d in docs if "metadata" in d}
    deployments = by_kind.get("Deployment", [])
    services = by_kind.get("Service", [])

    for path, dep in deployments:
        where = f"{path} {name_of(dep)}"
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        if not matches(dep["spec"]["selector"].get("matchLabels"), labels):
            problems.add(where, "spec.selector does not match the pod template's labels")
        pod = dep["spec"]["template"]["spec"]
        for vol in pod.get("volumes", []):
            for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                ref = vol.get(key, {}).get("name" if key == "configMap" else "secretName")
                if ref and (kind, ref) not in names:
                    problems.add(where, f"volume {vol['name']} uses undefined {kind} {ref}")
        for c in pod_containers(dep):
            for src in c.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    ref = src.get(key, {}).get("name")
                    if ref and (kind, ref) not in names:
                        problems.add(where, f"container {c['name']} reads undefined {kind} {ref}")
            ports = named_ports(c)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                get = (c.get(probe) or {}).get("httpGet")
                if not get:
                    continue
                if get["port"] not in ports:
                    problems.add(where, f"{c['name']} {probe} uses unknown port {get['port']}")
                elif ports[get["port"]] != ADMIN_PORT:
                    problems.add(where, f"{c['name']} {probe} does not probe the admin port")
                want = "/healthz" if probe == "livenessProbe" else "/readyz"
                if get["path"] != want:
                    problems.add(where, f"{c['name']} {probe} asks {get['path']}, not {want}")

    def pods_for(selector):
        return [d for _, d in deployments
                if matches(selector, d["spec"]["template"]["metadata"].get("labels", {}))]

    for path, svc in services:
        where = f"{path} {name_of(svc)}"
        pods = pods_for(svc["spec"].get("selector"))
        if not pods:
            problems.add(where, "its selector matches no Deployment's pods")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and not any(
                target in named_ports(c) for d in pods for c in pod_containers(d)
            ):
                problems.add(where, f"targetPort {target} is no container's port")

    for path, mon in by_kind.get("ServiceMonitor", []):
        where = f"{path} {name_of(mon)}"
        selector = mon["spec"]["selector"].get("matchLabels")
        picked = [s for _, s in services if matches(selector, s["metadata"].get("labels", {}))]
        if not picked:
            problems.add(where, "its selector matches no Service")
        for ep in mon["spec"]["endpoints"]:
            for svc in picked:
                if ep["port"] not in {p.get("name") for p in svc["spec"]["ports"]}:
                    problems.add(where, f"Service {svc['metadata']['name']} has no port {ep['port']}")
    for path, mon in by_kind.get("PodMonitor", []):
        where = f"{path} {name_of(mon)}"
        pods = pods_for(mon["spec"]["selector"].get("matchLabels"))
        if not pods:
            problems.add(where, "its selector matches no Deployment's pods")
        for ep in mon["spec"]["podMetricsEndpoints"]:
            for d in pods:
                if not any(ep["port"] in named_ports(c) for c in pod_containers(d)):
                    problems.add(where, f"{name_of(d)} has no port {ep['port']}")


def tollgate_containers(docs):
    """(path, deployment, container, configmap) for each container that mounts a tollgate.toml."""
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "ConfigMap"}
    out = []
    for path, dep in docs:
        if dep.get("kind") != "Deployment":
            continue
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"].get("volumes", [])}
        for c in pod_containers(dep):
            for mount in c.get("volumeMounts", []):
                cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
                cm = configmaps.get(cm_name)
                if cm and "tollgate.toml" in cm.get("data", {}):
                    out.append((path, dep, c, cm))
    return out


def container_env(docs, container):
    """The environment a container gets from its Secrets' stringData and its plain `env` values."""
    secrets = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "Secret"}
    env = {}
    for src in container.get("envFrom", []):
        ref = src.get("secretRef", {}).get("name")
        env.update({k: str(v) for k, v in (secrets.get(ref, {}).get("stringData") or {}).items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
    return env


def check_configs(docs, tollgate, problems):
    found = tollgate_containers(docs)
    if not found:
        problems.add("deploy/kubernetes", "no container mounts a ConfigMap with tollgate.toml")
    for path, dep, c, cm in found:
        where = f"{path} {name_of(cm)}"
        text = cm["data"]["tollgate.toml"]
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            problems.add(where, f"tollgate.toml: {e}")
            continue
        env = container_env(docs, c)
        mounts = [m["mountPath"] for m in c["volumeMounts"]]
        if env.get("TOLLGATE_CONFIG") not in [f"{m}/tollgate.toml" for m in mounts]:
            problems.add(where, f"{c['name']} does not point TOLLGATE_CONFIG at the mounted file")
        server = config.get("server", {})
        ports = named_ports(c)
        admin = server.get("admin_listen", "")
        if not admin.startswith("0.0.0.0:") or int(admin.rsplit(":", 1)[1]) != ADMIN_PORT:
            problems.add(where, f"admin_listen {admin}: probes and scrapes need 0.0.0.0:{ADMIN_PORT}")
        if ADMIN_PORT not in ports.values():
            problems.add(where, f"{c['name']} does not declare the admin port {ADMIN_PORT}")
        listen = server.get("listen", "")
        listen_port = int(listen.rsplit(":", 1)[1]) if ":" in listen else None
        if listen.startswith("127.0.0.1:"):
            if listen_port in ports.values():
                problems.add(where, "a loopback listener should not be a declared container port")
        elif listen_port not in ports.values():
            problems.add(where, f"listen {listen} is not a declared port of {c['name']}")
        replicas = dep["spec"].get("replicas", 1)
        shared = config.get("shared")
        if replicas > 1 and (shared is None or shared.get("replicas") != replicas):
            problems.add(where, f"{name_of(dep)} runs {replicas} replicas: [shared] replicas must match")
        if tollgate:
            run_check(tollgate, where, text, env, problems)


def run_check(tollgate, where, text, env, problems):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tollgate.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out = subprocess.run([tollgate, "check", "--config", path], env=env,
                             capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        problems.add(where, f"tollgate check failed:\n{out.stdout}{out.stderr}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tollgate", help="a tollgate binary: run `tollgate check` on each config")
    parser.add_argument("--kubernetes-version", default="1.30.0",
                        help="schemas to validate against (default 1.30.0: native sidecars are on)")
    args = parser.parse_args()
    if kubernetes_validate is None:
        sys.exit("validate.py: kubernetes-validate is missing: pip install kubernetes-validate")
    if args.tollgate and not os.access(args.tollgate, os.X_OK):
        sys.exit(f"validate.py: {args.tollgate} is not an executable")
    paths = sorted(ROOT.rglob("*.yaml"))
    docs = load(paths)
    problems = Problems()
    check_schema(docs, args.kubernetes_version, problems)
    if not problems:  # the wiring checks index fields the schema guarantees
        check_wiring(docs, problems)
        check_configs(docs, args.tollgate, problems)
    kinds = {d.get("kind") for _, d in docs}
    for kind in ("ConfigMap", "Secret", "Deployment", "Service", "ServiceMonitor", "PodMonitor"):
        if kind not in kinds:
            problems.add("deploy/kubernetes", f"no {kind} example")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    checked = "schemas, wiring and `tollgate check`" if args.tollgate else "schemas and wiring"
    print(f"deploy/validate.py: {len(docs)} documents in {len(paths)} files: {checked} ok")


if __name__ == "__main__":
    main()
