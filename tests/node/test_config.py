import pytest

from mdtp.node.errors import ConfigError
from mdtp.node.identity.config import SCHEMA, load_config, render_config


def write(tmp_path, text):
    (tmp_path / "config.toml").write_text(text)
    return tmp_path


def test_rendered_config_documents_every_key_and_loads_with_defaults(tmp_path):
    text = render_config({"node.id": "node0"})
    for key in SCHEMA:
        assert key.env in text
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.node_id == "node0"
    assert cfg.get("p2p", "max_frame_bytes") == 16 * 1024 * 1024
    assert cfg.path("tls", "ca") == tmp_path / "ca.pem"


def test_environment_overrides_every_key(tmp_path):
    home = write(tmp_path, render_config({"node.id": "node0"}))
    cfg = load_config(home, env={"MDTP_P2P_LISTEN": "127.0.0.1:9999", "MDTP_LOG_JSON": "true"})
    assert cfg.address("p2p") == ("127.0.0.1", 9999)
    assert cfg.get("log", "json") is True


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[node]\nid = "n"\n[p2p]\nlisten = 5\n', "[p2p] listen"),
        ('[node]\nid = "n"\n[p2p]\nmax_frame_bytes = "big"\n', "[p2p] max_frame_bytes"),
        ('[node]\nid = "n"\n[p2p]\nmax_frame_bytes = 10\n', "at least 1024"),
        ('[node]\nid = "n"\n[p2p]\nbogus = 1\n', "unknown key 'bogus' in [p2p]"),
        ('[node]\nid = "n"\n[nope]\n', "unknown section [nope]"),
        ("[node]\n", "[node] id is required"),
        ('[node]\nid = "n"\n[api]\nlisten = "nohost"\n', "expected host:port"),
        ("[node\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path, text, needle):
    home = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(home, env={})
    assert needle in str(e.value)
    assert "config.toml" in str(e.value) or "environment" in str(e.value)


def test_bad_environment_override_names_the_variable(tmp_path):
    home = write(tmp_path, render_config({"node.id": "node0"}))
    with pytest.raises(ConfigError) as e:
        load_config(home, env={"MDTP_P2P_MAX_FRAME_BYTES": "lots"})
    assert "MDTP_P2P_MAX_FRAME_BYTES" in str(e.value)


def test_missing_home_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "missing", env={})
    assert "mdtp init" in str(e.value)
