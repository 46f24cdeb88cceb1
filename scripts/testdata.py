#!/usr/bin/env python3
"""Helpers for scripts/gen-testdata.sh (standard library only).

Subcommands:
  server-json SNAPSHOT MAJOR OUT   turn the JSON line that gen-testdata.sh got
                                   from psql into testdata/control/<x>/server.json
  hexfile HEX OUT                  write the bytes of a hex string (byte-exact)
  wal-info MAJOR SERVER_JSON SEG OUT
                                   write testdata/wal/pg<M>/info.json
  malformed SRC OUTDIR             derive the malformed pg_control samples
  check TESTDATA_DIR               check pg_control_version and CRC-32C of every
                                   sample under TESTDATA_DIR/control
"""
import json
import os
import struct
import sys

# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected, init 0xFFFFFFFF, final xor 0xFFFFFFFF:
# what PostgreSQL's INIT_CRC32C/COMP_CRC32C/FIN_CRC32C compute.
_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# pg_control_version (u32 LE at offset 8) and offset of the crc field, per major.
EXPECTED_VERSION = {10: 1002, 11: 1100, 12: 1201, 13: 1300, 14: 1300,
                    15: 1300, 16: 1300, 17: 1700, 18: 1800}
EXPECTED_CRC_OFF = {10: 288, 11: 280, 12: 288, 13: 288, 14: 288,
                    15: 288, 16: 288, 17: 288, 18: 292}

UNIT_BYTES = {"B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def setting_bytes(setting: str, unit) -> int:
    """pg_settings' (setting, unit) to bytes; unit is e.g. 'B', '8kB', 'MB', None."""
    n = int(setting)
    if not unit:
        return n
    num = "".join(ch for ch in unit if ch.isdigit())
    base = unit[len(num):]
    return n * (int(num) if num else 1) * UNIT_BYTES[base]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def cmd_server_json(snapshot_path, major, out):
    with open(snapshot_path) as f:
        s = json.load(f)
    wal_seg = setting_bytes(s["wal_segment_size_setting"], s["wal_segment_size_unit"])
    init = s["pg_control_init"]
    if init.get("bytes_per_wal_segment") != wal_seg:
        sys.exit(f"wal_segment_size {wal_seg} != pg_control_init.bytes_per_wal_segment "
                 f"{init.get('bytes_per_wal_segment')}")
    if init.get("database_block_size") != int(s["block_size"]):
        sys.exit("block_size disagrees with pg_control_init.database_block_size")
    server_version_num = int(s["server_version_num"])
    if server_version_num // 10000 != int(major):
        sys.exit(f"server_version_num {server_version_num} is not major {major}")
    obj = {
        "major": int(major),
        "server_version_num": server_version_num,
        "version": s["version"],
        "wal_segment_size": wal_seg,
        "block_size": int(s["block_size"]),
        "data_checksums": s["data_checksums"],
        "pg_control_system": s["pg_control_system"],
        "pg_control_checkpoint": s["pg_control_checkpoint"],
        "pg_control_init": s["pg_control_init"],
        "pg_control_recovery": s["pg_control_recovery"],
        # Not a server output: the two timestamps above as seconds since the
        # Unix epoch (pg_control stores them as pg_time_t), for easy comparison.
        "unix_times": s["unix_times"],
    }
    write_json(out, obj)


def cmd_hexfile(hexstr, out):
    with open(out, "wb") as f:
        f.write(bytes.fromhex(hexstr.strip()))


def cmd_wal_info(major, server_json, seg, out):
    with open(server_json) as f:
        sj = json.load(f)
    with open(os.path.join(os.path.dirname(out), seg + ".head"), "rb") as f:
        head = f.read()
    magic = struct.unpack_from("<H", head, 0)[0]
    write_json(out, {
        "major": int(major),
        "segment": seg,
        "system_identifier": str(sj["pg_control_system"]["system_identifier"]),
        "wal_segment_size": sj["wal_segment_size"],
        "xlog_page_magic_hex": f"0x{magic:04X}",
    })


def cmd_malformed(src, outdir):
    with open(src, "rb") as f:
        data = f.read()
    os.makedirs(outdir, exist_ok=True)

    def put(name, b):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(b)

    put("truncated", data[:100])
    b = bytearray(data)
    b[40] ^= 0x01
    put("flipped-byte", bytes(b))
    b = bytearray(data)
    struct.pack_into("<I", b, 8, 9999)
    put("unknown-version", bytes(b))
    b = bytearray(data)
    b[8:12] = data[8:12][::-1]
    put("wrong-endian", bytes(b))
    put("empty", b"")


def find_crc_offsets(data, limit=1024):
    """All 4-aligned offsets o with crc32c(data[:o]) == u32le at o."""
    hits = []
    for o in range(8, min(limit, len(data) - 4) + 1, 4):
        if crc32c(data[:o]) == struct.unpack_from("<I", data, o)[0]:
            hits.append(o)
    return hits


def cmd_check(testdata):
    ctl = os.path.join(testdata, "control")
    ok = True
    names = sorted((d for d in os.listdir(ctl) if d.startswith("pg")),
                   key=lambda d: (int(d[2:].split("-")[0]), d))
    for d in names:
        path = os.path.join(ctl, d, "pg_control")
        with open(path, "rb") as f:
            data = f.read()
        with open(os.path.join(ctl, d, "server.json")) as f:
            sj = json.load(f)
        major = sj["major"]
        sysid, ver = struct.unpack_from("<QI", data, 0)
        exp_ver = EXPECTED_VERSION[major]
        off = EXPECTED_CRC_OFF[major]
        stored = struct.unpack_from("<I", data, off)[0]
        calc = crc32c(data[:off])
        found = find_crc_offsets(data)
        sysid_ok = str(sysid) == str(sj["pg_control_system"]["system_identifier"])
        ver_ok = ver == exp_ver == sj["pg_control_system"]["pg_control_version"]
        crc_ok = stored == calc
        good = ver_ok and crc_ok and sysid_ok and found == [off] and len(data) == 8192
        ok &= good
        print(f"{d:12s} size={len(data)} pg_control_version={ver} (expected {exp_ver}) "
              f"crc_off={off} stored=0x{stored:08x} computed=0x{calc:08x} "
              f"{'CRC OK' if crc_ok else 'CRC MISMATCH'} scan={found} "
              f"sysid={'matches' if sysid_ok else 'MISMATCH'} -> {'OK' if good else 'FAIL'}")
    mdir = os.path.join(ctl, "malformed")
    if os.path.isdir(mdir):
        for name in sorted(os.listdir(mdir)):
            if name.endswith(".md"):
                continue
            with open(os.path.join(mdir, name), "rb") as f:
                data = f.read()
            desc = f"size={len(data)}"
            if len(data) >= 12:
                desc += f" u32le@8={struct.unpack_from('<I', data, 8)[0]}"
            if len(data) >= 292:
                off = 288
                stored = struct.unpack_from("<I", data, off)[0]
                desc += (f" crc@288 {'OK' if crc32c(data[:off]) == stored else 'mismatch'}")
            print(f"malformed/{name:16s} {desc}")
    if not ok:
        sys.exit("pg_control check FAILED")
    print("all pg_control samples OK")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    {"server-json": cmd_server_json, "hexfile": cmd_hexfile, "wal-info": cmd_wal_info,
     "malformed": cmd_malformed, "check": cmd_check}[cmd](*args)


if __name__ == "__main__":
    main(sys.argv)
