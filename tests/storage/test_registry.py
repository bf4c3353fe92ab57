import json

import pytest

from storage.registry import ModelRegistry, RegistryError


def make_version(registry: ModelRegistry, version: str, content: bytes = b"onnx") -> None:
    vdir = registry.version_dir("m", version)
    vdir.mkdir(parents=True)
    (vdir / "model.onnx").write_bytes(content + version.encode())
    registry.write_card("m", version, {"version": version})


def test_activate_and_rollback_follow_the_serving_stack(tmp_path):
    reg = ModelRegistry(tmp_path)
    for v in ("v1", "v2", "v3"):
        make_version(reg, v)
        reg.activate("m", v, actor="daemon")
    assert reg.active("m") == "v3"
    assert reg.rollback("m", actor="operator") == ("v3", "v2")
    assert reg.rollback("m", actor="operator") == ("v2", "v1")
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback("m", actor="operator")
    assert [a.action for a in reg.history("m")][-2:] == ["rollback", "rollback"]
    assert not list(tmp_path.glob("m/.ACTIVE*.tmp")), "temp files must not linger"


def test_names_cannot_escape_the_root(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    for bad in ("../etc", "..", "a/b", "/abs", ""):
        with pytest.raises(RegistryError):
            reg.version_dir("m", bad)


def test_tampered_model_is_refused(tmp_path):
    reg = ModelRegistry(tmp_path)
    make_version(reg, "v1")
    (reg.onnx_path("m", "v1")).write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="sha256"):
        reg.activate("m", "v1", actor="daemon")
    assert reg.active("m") is None
    assert "onnx_sha256" in json.loads((reg.version_dir("m", "v1") / "card.json").read_text())
