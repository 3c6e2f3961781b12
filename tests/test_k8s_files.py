"""deploy/k8s: the manifests parse, agree with each other and with the daemon's config."""

from __future__ import annotations

from pathlib import Path

import yaml

from stream.config import DaemonConfig, load_config

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
    cron = d["CronJob/sparsecam-retrain-camera-node-1"]
    job = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cmd = job["containers"][0]["command"]
    assert cmd[:2] == ["sparsecam", "retrain"]
    assert cmd[cmd.index("--models") + 1] == str(cfg.model.dir)
    assert cmd[cmd.index("--recordings") + 1] == str(cfg.recording.dir)
    assert job["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    assert job["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cmd[cmd.index("--camera") + 1] == "camera-node-1"


def test_each_node_publishes_records_and_retrains_its_own_camera(monkeypatch, tmp_path):
    """Every pod ran camera cam0 on the one shared volume: each enforced its quota on the others'
    frames, all served one model, and the CronJob trained on every node's footage mixed."""
    d = docs()
    c = d["DaemonSet/sparsecam"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["SPARSECAM_CAMERAS__0__ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # what the pod's daemon then reads: the config map with the node's name as the camera id
    cm = tmp_path / "sparsecam.yaml"
    cm.write_text(d["ConfigMap/sparsecam-config"]["data"]["sparsecam.yaml"])
    monkeypatch.setenv("SPARSECAM_CAMERAS__0__ID", "ip-10-0-1-23.eu-west-1.compute.internal")
    cfg = load_config(cm)
    assert [cam.id for cam in cfg.cameras] == ["ip-10-0-1-23.eu-west-1.compute.internal"]


def test_camera_device_is_opened_by_a_privileged_container_and_a_rejected_retrain_is_not_rerun():
    """A /dev/video0 hostPath in an unprivileged container is visible but the device cgroup refuses
    open(); a retrain that exits 1 (rejected) or 2 (bad footage) was re-run up to twice a night."""
    d = docs()
    ds = d["DaemonSet/sparsecam"]["spec"]["template"]["spec"]
    sc = ds["containers"][0]["securityContext"]
    assert sc["privileged"] is True
    assert sc.get("allowPrivilegeEscalation") is not False  # the API server refuses it beside privileged: true
    assert not any("hostPath" in v and v["hostPath"]["path"].startswith("/dev/") for v in ds["volumes"])
    job = d["CronJob/sparsecam-retrain-camera-node-1"]["spec"]["jobTemplate"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and sorted(rule["onExitCodes"]["values"]) == [1, 2]
    # no service-link variables in the SPARSECAM_ namespace of the configuration
    assert ds["enableServiceLinks"] is False and job["template"]["spec"]["enableServiceLinks"] is False
