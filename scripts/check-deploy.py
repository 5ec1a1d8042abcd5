#!/usr/bin/env python3
"""Offline checks of deploy/kubernetes (no cluster needed).

kubernetes-validate checks every built-in resource against the Kubernetes
schemas; this script adds what a schema cannot see: the sink.toml in the
ConfigMap parses, the pod's grace period outlasts the drain, the probes hit
the sink's endpoints on its metrics port, every secretKeyRef names a key of
the Secret, and the selectors match the pods they are meant for.
Exits non-zero, naming the problem, on the first failure.
"""
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

DIR = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def fail(msg):
    print(f"check-deploy: {msg}", file=sys.stderr)
    sys.exit(1)


def load(name):
    with open(DIR / name) as f:
        return yaml.safe_load(f)


def main():
    builtin = ["configmap.yaml", "secret.yaml", "deployment.yaml",
               "backfill-job.yaml", "pdb.yaml", "service.yaml"]
    r = subprocess.run(["kubernetes-validate", "--strict", "--quiet",
                        *[str(DIR / f) for f in builtin]])
    if r.returncode != 0:
        fail("kubernetes-validate refused a manifest")

    cm, secret, deploy = load("configmap.yaml"), load("secret.yaml"), load("deployment.yaml")
    job, pdb, svc, pm = load("backfill-job.yaml"), load("pdb.yaml"), load("service.yaml"), load("podmonitor.yaml")
    try:
        toml = tomllib.loads(cm["data"]["sink.toml"])
    except tomllib.TOMLDecodeError as e:
        fail(f"configmap.yaml: sink.toml does not parse: {e}")
    drain_s = toml.get("sink", {}).get("shutdown_timeout_ms", 30000) / 1000
    if toml.get("metrics", {}).get("listen", "").rsplit(":", 1)[-1] != "9187":
        fail("configmap.yaml: metrics.listen must be on port 9187, the pods' metrics port")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))

    for name, obj in [("deployment.yaml", deploy), ("backfill-job.yaml", job)]:
        pod = obj["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= drain_s:
            fail(f"{name}: terminationGracePeriodSeconds {grace} must exceed "
                 f"sink.shutdown_timeout_ms ({drain_s:.0f} s)")
        (c,) = pod["containers"]
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and (ref["name"] != secret["metadata"]["name"] or ref["key"] not in keys):
                fail(f"{name}: {e['name']} refers to a missing secret key {ref}")
        if not any(p.get("name") == "metrics" and p["containerPort"] == 9187
                   for p in c.get("ports", [])):
            fail(f"{name}: no port named metrics on 9187")
        mounts = {m["name"] for m in c.get("volumeMounts", [])}
        cms = {v["name"] for v in pod.get("volumes", [])
               if v.get("configMap", {}).get("name") == cm["metadata"]["name"]}
        if not mounts & cms:
            fail(f"{name}: the ConfigMap is not mounted")
        if "--config" not in c.get("args", []):
            fail(f"{name}: the sink is not given --config")

    c = deploy["spec"]["template"]["spec"]["containers"][0]
    if c["livenessProbe"]["httpGet"]["path"] != "/healthz":
        fail("deployment.yaml: liveness must probe /healthz")
    if c["readinessProbe"]["httpGet"]["path"] != "/readyz":
        fail("deployment.yaml: readiness must probe /readyz")
    if "resources" not in c or "requests" not in c["resources"]:
        fail("deployment.yaml: no resource requests")
    if "--until-caught-up" not in job["spec"]["template"]["spec"]["containers"][0]["args"]:
        fail("backfill-job.yaml: the job must run --until-caught-up")

    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    job_labels = job["spec"]["template"]["metadata"]["labels"]

    def selects(sel, labels):
        return all(labels.get(k) == v for k, v in sel.items())

    for name, sel in [("pdb.yaml", pdb["spec"]["selector"]["matchLabels"]),
                      ("service.yaml", svc["spec"]["selector"]),
                      ("podmonitor.yaml", pm["spec"]["selector"]["matchLabels"])]:
        if not selects(sel, pod_labels):
            fail(f"{name}: its selector does not match the Deployment's pods")
    if selects(pdb["spec"]["selector"]["matchLabels"], job_labels):
        fail("pdb.yaml: the budget must not cover the backfill job's pods")
    if pm["apiVersion"] != "monitoring.coreos.com/v1" or pm["kind"] != "PodMonitor":
        fail("podmonitor.yaml: not a monitoring.coreos.com/v1 PodMonitor")
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    if ep.get("port") != "metrics" or ep.get("path", "/metrics") != "/metrics":
        fail("podmonitor.yaml: must scrape the metrics port's /metrics")
    if pod_labels.get(pm["spec"].get("jobLabel")) != "kafka-mysql-sink":
        fail("podmonitor.yaml: jobLabel must give job=\"kafka-mysql-sink\", which the alerts select")
    kust = load("kustomization.yaml")
    want = {f for f in builtin if f != "backfill-job.yaml"} | {"podmonitor.yaml"}
    if set(kust.get("resources", [])) != want:
        fail(f"kustomization.yaml: resources must be {sorted(want)} (the Job is applied on its own)")
    print("deploy/kubernetes: OK")


if __name__ == "__main__":
    main()
