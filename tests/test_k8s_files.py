"""deploy/k8s: the manifests parse, agree with each other and with the daemon's config."""

from __future__ import annotations

from pathlib import Path

import yaml

from stream.config import DaemonConfig

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"


def docs() -> dict[str, dict]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def test_manifests_reference_each_other_and_validate():
    d = docs()
    cm = d["ConfigMap/sparsecam-config"]
    cfg = DaemonConfig.model_validate(yaml.safe_load(cm["data"]["sparsecam.yaml"]))
    ds = d["DaemonSet/sparsecam"]["spec"]["template"]["spec"]
    c = ds["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in ds["volumes"]}
    assert vols["config"]["configMap"]["name"] == "sparsecam-config"
    claim = vols["state"]["persistentVolumeClaim"]["claimName"]
    assert f"PersistentVolumeClaim/{claim}" in d
    # the daemon's models and recordings live on the shared volume the CronJob writes to
    assert str(cfg.model.dir).startswith(mounts["state"]) and str(cfg.recording.dir).startswith(mounts["state"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert cfg.metrics.bind.endswith(":9108") and {p["containerPort"] for p in c["ports"]} == {5556, 9108}
    job = d["CronJob/sparsecam-retrain-cam0"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cmd = job["containers"][0]["command"]
    assert cmd[:2] == ["sparsecam", "retrain"]
    assert cmd[cmd.index("--models") + 1] == str(cfg.model.dir)
    assert cmd[cmd.index("--recordings") + 1] == str(cfg.recording.dir)
    assert job["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    assert job["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert d["CronJob/sparsecam-retrain-cam0"]["spec"]["concurrencyPolicy"] == "Forbid"
