"""Pure parts of the collector, on files laid out like /proc."""

from __future__ import annotations

from pathlib import Path

from extension.collector import is_loopback, read_listening_ports

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: garbage
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000000000000:ZZZZ 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


def test_listening_ports_from_proc_net(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    (tmp_path / "net" / "tcp6").write_text(TCP6)
    # 8080 and 22 listen; the established connection's port and the malformed lines are ignored
    assert read_listening_ports(tmp_path) == {("tcp", 8080), ("tcp", 22)}


def test_listening_ports_without_proc_net(tmp_path: Path) -> None:
    assert read_listening_ports(tmp_path) == set()


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.255.0.9") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("::2") and not is_loopback("1270::1")
