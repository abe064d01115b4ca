"""Reading the authkey file (the process-level refusals are in tests/process/test_config_errors.py)."""


def test_the_key_is_the_file_with_surrounding_whitespace_stripped(tmp_path):
    from mpcluster.config import read_authkey

    (tmp_path / "a").write_text("0123456789abcdef0123\n")
    (tmp_path / "b").write_text("  0123456789abcdef0123  \r\n")
    assert read_authkey(str(tmp_path / "a")) == read_authkey(str(tmp_path / "b")) == b"0123456789abcdef0123"
