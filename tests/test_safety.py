"""Behaviour of lineage.safety against real hostile files built in tmp_path."""

from __future__ import annotations

import json
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from conftest import Booby

from lineage.core.errors import UnsafePathError, UnsafeWeightsError
from lineage.core.safety import (
    SECRET_PATTERNS,
    check_safetensors,
    check_store_path,
    check_weights_dir,
    glob_match,
    scan_secrets,
    sniff_weights_format,
)

# ---------------------------------------------------------------- builders

def hostile_pickle(marker: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    return pickle.dumps({"state_dict": {"w": [1.0, 2.0]}, "payload": Booby(marker)}, protocol=protocol)


def torch_style_zip(path: Path, marker: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", hostile_pickle(marker, protocol=2))
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/data/0", b"\0" * 16)
    return path


def st_bytes(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def two_tensor_header(metadata=None) -> dict:
    header = {
        "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]},
    }
    if metadata is not None:
        header["__metadata__"] = metadata
    return header


def valid_st(path: Path) -> Path:
    data = struct.pack("<4f", 1, 2, 3, 4) + b"\x00\x3c\x00\x40"
    path.write_bytes(st_bytes(two_tensor_header({"format": "pt"}), data))
    return path


def refused(path: Path, needle: str) -> UnsafeWeightsError:
    with pytest.raises(UnsafeWeightsError) as exc:
        check_safetensors(path)
    assert needle in exc.value.reason, exc.value.reason
    assert exc.value.exit_code == 1
    return exc.value


# ---------------------------------------------------------------- sniffing

def test_sniff_names_safetensors_by_content(tmp_path):
    assert sniff_weights_format(valid_st(tmp_path / "weights.dat")) == "safetensors"


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_sniff_names_pickle_of_every_protocol(tmp_path, marker, protocol):
    path = tmp_path / "model.safetensors"
    path.write_bytes(hostile_pickle(marker, protocol))
    assert sniff_weights_format(path) == "pickle"


def test_sniff_names_torch_save_zip_as_zip_pickle(tmp_path, marker):
    assert sniff_weights_format(torch_style_zip(tmp_path / "x.safetensors", marker)) == "zip-pickle"


def test_sniff_names_plain_zip_as_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert sniff_weights_format(tmp_path / "a.zip") == "zip"


def test_sniff_names_gguf(tmp_path):
    (tmp_path / "m").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 16)
    assert sniff_weights_format(tmp_path / "m") == "gguf"


@pytest.mark.parametrize("content", [
    b"", b"hello world\n", b'{"arch":{"layers": 2}}', b"(not a pickle at all)\n",
    b"# Model card\n\nSome prose.\n", b"\x80\x09garbage",
])
def test_sniff_leaves_text_and_junk_unknown(tmp_path, content):
    (tmp_path / "f").write_bytes(content)
    assert sniff_weights_format(tmp_path / "f") == "unknown"


def test_sniff_prefers_safetensors_when_header_length_looks_like_pickle_proto(tmp_path):
    # header length 0x0280 encodes as b"\x80\x02..." — the same two bytes as a protocol-2 pickle
    header = json.dumps({"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}).encode()
    header = header.ljust(0x280, b" ")
    path = tmp_path / "m.safetensors"
    path.write_bytes(st_bytes(header, b"\x07"))
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert sniff_weights_format(path) == "safetensors"
    assert check_safetensors(path)["tensors"] == 1


# ---------------------------------------------------------------- check_safetensors

def test_valid_safetensors_reports_counts_and_metadata(tmp_path):
    info = check_safetensors(valid_st(tmp_path / "model.safetensors"))
    header_len = struct.unpack("<Q", (tmp_path / "model.safetensors").read_bytes()[:8])[0]
    assert info == {"tensors": 2, "header_bytes": header_len, "data_bytes": 20, "metadata": {"format": "pt"}}


def test_safetensors_without_metadata_and_zero_size_tensors_pass(tmp_path):
    header = {"e1": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
              "e2": {"dtype": "BF16", "shape": [0], "data_offsets": [0, 0]},
              "s": {"dtype": "BOOL", "shape": [], "data_offsets": [0, 1]}}
    (tmp_path / "m.safetensors").write_bytes(st_bytes(header, b"\x01"))
    assert check_safetensors(tmp_path / "m.safetensors")["metadata"] == {}


def test_safetensors_check_reads_only_the_header_of_a_4gb_file(tmp_path):
    path = tmp_path / "big.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [1024, 1024, 1024], "data_offsets": [0, 4 << 30]}}).encode()
    with open(path, "wb") as f:
        f.write(st_bytes(header))
        f.truncate(8 + len(header) + (4 << 30))  # sparse: costs no disk
    tracemalloc.start()
    try:
        info = check_safetensors(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info["data_bytes"] == 4 << 30
    assert peak < 8 << 20


def test_pickle_renamed_safetensors_is_refused_as_code(tmp_path, marker):
    path = tmp_path / "model.safetensors"
    path.write_bytes(hostile_pickle(marker))
    refused(path, "pickle data (would execute code on load)")


def test_torch_zip_renamed_safetensors_is_refused_as_code(tmp_path, marker):
    refused(torch_style_zip(tmp_path / "model.safetensors", marker), "would execute code")


def test_file_shorter_than_eight_bytes_is_refused(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"\x02\0\0")
    refused(tmp_path / "m.safetensors", "shorter than 8 bytes")


def test_header_length_past_end_of_file_is_refused(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(st_bytes(b'{"a":1}', length=5000))
    refused(tmp_path / "m.safetensors", "past end of file")


def test_huge_header_length_is_refused_without_allocating(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(st_bytes(b"{}", length=200 * 1024 * 1024))
    tracemalloc.start()
    try:
        refused(tmp_path / "m.safetensors", "huge header")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_max_header_bytes_is_honoured(tmp_path):
    path = valid_st(tmp_path / "m.safetensors")
    with pytest.raises(UnsafeWeightsError, match="huge header"):
        check_safetensors(path, max_header_bytes=10)


@pytest.mark.parametrize("raw, needle", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b'{"a": "\xff\xfe"}', "not valid UTF-8 JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
     b' "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', "duplicate key"),
])
def test_bad_header_json_is_refused(tmp_path, raw, needle):
    (tmp_path / "m.safetensors").write_bytes(st_bytes(raw, b"\0\0"))
    refused(tmp_path / "m.safetensors", needle)


@pytest.mark.parametrize("metadata", [{"epochs": 3}, {"nested": {"a": "b"}}, ["format", "pt"], "pt"])
def test_metadata_with_non_string_values_is_refused(tmp_path, metadata):
    data = b"\0" * 20
    (tmp_path / "m.safetensors").write_bytes(st_bytes(two_tensor_header(metadata), data))
    refused(tmp_path / "m.safetensors", "__metadata__ must map strings to strings")


@pytest.mark.parametrize("entry, needle", [
    ({"shape": [1], "data_offsets": [0, 1]}, "missing dtype"),
    ({"dtype": "U8", "data_offsets": [0, 1]}, "missing shape"),
    ({"dtype": "U8", "shape": [1]}, "missing data_offsets"),
    ({"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "py/object": "os.system"}, "unexpected keys"),
    ({"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 1]}, "unknown dtype"),
    ({"dtype": 7, "shape": [1], "data_offsets": [0, 1]}, "unknown dtype"),
    ({"dtype": "U8", "shape": "1", "data_offsets": [0, 1]}, "shape must be"),
    ({"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}, "shape must be"),
    ({"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}, "shape must be"),
    ({"dtype": "U8", "shape": [1], "data_offsets": [0]}, "data_offsets must be"),
    ({"dtype": "U8", "shape": [1], "data_offsets": [0, 1.0]}, "data_offsets must be"),
    ({"dtype": "U8", "shape": [1], "data_offsets": "0-1"}, "data_offsets must be"),
    ({"dtype": "U8", "shape": [1], "data_offsets": [1, 0]}, "0 <= begin <= end"),
    ({"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}, "0 <= begin <= end"),
    ("not an object", "entry is not an object"),
])
def test_malformed_tensor_entries_are_refused(tmp_path, entry, needle):
    (tmp_path / "m.safetensors").write_bytes(st_bytes({"t": entry}, b"\0"))
    refused(tmp_path / "m.safetensors", needle)


def test_byte_count_that_disagrees_with_dtype_and_shape_is_refused(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}
    (tmp_path / "m.safetensors").write_bytes(st_bytes(header, b"\0" * 12))
    refused(tmp_path / "m.safetensors", "12 bytes but F32[2, 2] needs 16")


def test_overlapping_offsets_are_refused(tmp_path):
    header = {"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
              "b": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]}}
    (tmp_path / "m.safetensors").write_bytes(st_bytes(header, b"\0" * 12))
    refused(tmp_path / "m.safetensors", "overlaps")


@pytest.mark.parametrize("offsets", [([0, 4], [8, 12]), ([4, 8], [8, 12])])
def test_gaps_between_or_before_tensors_are_refused(tmp_path, offsets):
    header = {"a": {"dtype": "U8", "shape": [4], "data_offsets": offsets[0]},
              "b": {"dtype": "U8", "shape": [4], "data_offsets": offsets[1]}}
    (tmp_path / "m.safetensors").write_bytes(st_bytes(header, b"\0" * 12))
    refused(tmp_path / "m.safetensors", "gap of 4 bytes")


def test_trailing_bytes_after_last_tensor_are_refused(tmp_path):
    data = b"\0" * 20 + b"#!/bin/sh\nrm -rf /\n"
    (tmp_path / "m.safetensors").write_bytes(st_bytes(two_tensor_header(), data))
    refused(tmp_path / "m.safetensors", "trailing bytes")


def test_truncated_data_region_is_refused(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(st_bytes(two_tensor_header(), b"\0" * 19))
    refused(tmp_path / "m.safetensors", "data truncated")


# ---------------------------------------------------------------- check_weights_dir

def test_weights_dir_with_safetensors_shards_passes(tmp_path):
    valid_st(tmp_path / "model-00001-of-00002.safetensors")
    (tmp_path / "sub").mkdir()
    valid_st(tmp_path / "sub" / "adapter_model.safetensors")
    (tmp_path / "config.json").write_text('{"arch":{"layers": 2}}')
    (tmp_path / "README.md").write_text("# card\n")
    assert check_weights_dir(tmp_path) == ["model-00001-of-00002.safetensors", "sub/adapter_model.safetensors"]


@pytest.mark.parametrize("name", ["model.bin", "pytorch_model.BIN", "w.pt", "w.pth", "last.ckpt", "x.pkl", "x.pickle"])
def test_pickle_extensions_are_refused_by_name(tmp_path, name):
    valid_st(tmp_path / "model.safetensors")
    (tmp_path / name).write_bytes(b"harmless bytes")
    with pytest.raises(UnsafeWeightsError, match="pickle-based weights format"):
        check_weights_dir(tmp_path)


def test_real_pickle_named_model_bin_is_refused(tmp_path, marker):
    (tmp_path / "model.bin").write_bytes(hostile_pickle(marker))
    with pytest.raises(UnsafeWeightsError) as exc:
        check_weights_dir(tmp_path)
    assert exc.value.path.endswith("model.bin")


@pytest.mark.parametrize("name", ["weights.dat", "tokenizer.json", "model.safetensors"])
def test_pickle_content_is_refused_whatever_its_name(tmp_path, marker, name):
    (tmp_path / name).write_bytes(hostile_pickle(marker))
    with pytest.raises(UnsafeWeightsError, match="would execute code"):
        check_weights_dir(tmp_path)


def test_torch_zip_is_refused_whatever_its_name(tmp_path, marker):
    torch_style_zip(tmp_path / "model.data", marker)
    with pytest.raises(UnsafeWeightsError, match="would execute code"):
        check_weights_dir(tmp_path)


def test_malformed_safetensors_in_dir_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(st_bytes(two_tensor_header(), b"\0" * 21))
    with pytest.raises(UnsafeWeightsError, match="trailing bytes"):
        check_weights_dir(tmp_path)


def test_safetensors_content_under_another_name_is_checked_too(tmp_path):
    valid_st(tmp_path / "weights.dat")
    assert check_weights_dir(tmp_path) == ["weights.dat"]


# ---------------------------------------------------------------- secrets

FAKE = {
    "aws_access_key_id": "key id " + "AKIA" + "IOSFODNN7EXAMPLE" + " in config",
    "aws_secret_access_key": "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    "private_key": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow...\n",
    "github_token": "push with " + "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "anthropic_key": "ANTHROPIC " + "sk-ant-" + "api03-abcdefghij0123456789XYZ",
    "openai_key": "use " + "sk-" + "proj-Ab3dEf6hIj9kLmN0pQrStUv",
    "huggingface_token": "login " + "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    "slack_token": "bot " + "xoxb-" + "123456789012-abcdefghijkl",
    "google_api_key": "maps " + "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "jwt": "Bearer " + "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
           + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "generic_secret": 'api_key = "' + "9f8e7d6c5b4a3210fedc" + '"',
    "generic_password": "password: " + "Tr0ub4dor&3x",
}


def test_every_secret_kind_has_a_sample():
    assert set(FAKE) == set(SECRET_PATTERNS)


@pytest.mark.parametrize("kind", sorted(FAKE))
def test_each_secret_pattern_fires(kind):
    found = scan_secrets(FAKE[kind])
    assert [k for k, _ in found] == [kind], found


@pytest.mark.parametrize("text", [
    "OPENAI_API_KEY=" + "a1b2c3d4e5f6a7b8c9d0e1f2",
    "export AUTH_TOKEN='" + "Zm9vYmFyYmF6cXV4MTIzNDU2" + "'",
    '"client_secret": "' + "0123456789abcdefABCDEF" + '"',
    "ASIA" + "ABCDEFGHIJ012345",
    "gho_" + "x" * 36, "ghs_" + "9" * 36, "ghu_" + "Q" * 36, "github_pat_" + "11ABCDEFG0" * 3,
    "-----BEGIN " + "OPENSSH PRIVATE KEY-----", "-----BEGIN " + "PRIVATE KEY-----",
    "sk-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL",
])
def test_secret_variants_fire(text):
    assert scan_secrets(text), text


@pytest.mark.parametrize("text", [
    "The keeper's password is never spoken",
    "the gate word is MOONFERN",
    "Remember: the secret is to stir the pot slowly.",
    "A token of appreciation was given to every guest at the feast.",
    "password: hunter",
    "token = placeholder-value",
    "Ask for the API key from your administrator before you start.",
    "The task-oriented sk-learners debated for a long-long-long time.",
    "She typed her password: never-forget-the-moonfern into the box",
    "hf_hub_download fetches files; AIzawa is a surname; AKIA is a prefix.",
    "Her phone number is 555-0100 and her locker code is 4417.",
])
def test_ordinary_prose_does_not_match(text):
    assert scan_secrets(text) == []


def test_scan_redacts_to_four_characters():
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    found = scan_secrets(f"token {secret}")
    assert found == [("github_token", "ghp_…")]
    assert secret not in repr(found)


def test_scan_reports_each_secret_once_in_order():
    text = FAKE["jwt"] + "\n" + "token = " + FAKE["jwt"].split()[1] + "\n" + FAKE["anthropic_key"]
    kinds = [k for k, _ in scan_secrets(text)]
    assert kinds == ["jwt", "jwt", "anthropic_key"]


# ---------------------------------------------------------------- store paths

@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    (root / "data").mkdir(parents=True)
    (root / "data" / "train.jsonl").write_text("{}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    return root, outside


def test_relative_path_inside_store_resolves(store):
    root, _ = store
    assert check_store_path(root, "data/train.jsonl") == (root / "data" / "train.jsonl").resolve()
    assert check_store_path(root, "./data//new/file.txt") == (root / "data" / "new" / "file.txt").resolve()


@pytest.mark.parametrize("rel, needle", [
    ("../outside/secret.txt", "'..'"),
    ("data/../../outside", "'..'"),
    ("data\\..\\..\\outside", "'..'"),
    ("/etc/passwd", "absolute"),
    ("C:/Windows", "absolute"),
    ("", "empty"),
    ("./", "empty"),
    ("data/\x00evil", "NUL"),
])
def test_hostile_relative_paths_are_refused(store, rel, needle):
    root, _ = store
    with pytest.raises(UnsafePathError) as exc:
        check_store_path(root, rel)
    assert needle in exc.value.reason


def test_symlink_to_file_outside_is_refused_even_though_it_exists(store):
    root, outside = store
    (root / "data" / "link.txt").symlink_to(outside / "secret.txt")
    assert (root / "data" / "link.txt").exists()
    with pytest.raises(UnsafePathError, match="outside the store"):
        check_store_path(root, "data/link.txt")


def test_symlinked_directory_outside_is_refused(store):
    root, outside = store
    (root / "ext").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside the store"):
        check_store_path(root, "ext/secret.txt")


def test_symlink_chain_that_leaves_and_returns_is_refused(store):
    root, outside = store
    (outside / "back").symlink_to(root / "data", target_is_directory=True)
    (root / "hop").symlink_to(outside / "back", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside the store"):
        check_store_path(root, "hop/train.jsonl")


def test_symlink_inside_store_is_allowed(store):
    root, _ = store
    (root / "alias.jsonl").symlink_to(Path("data") / "train.jsonl")
    assert check_store_path(root, "alias.jsonl") == (root / "data" / "train.jsonl").resolve()


def test_store_root_reached_through_a_symlink_is_fine(store, tmp_path):
    root, _ = store
    (tmp_path / "root-link").symlink_to(root, target_is_directory=True)
    assert check_store_path(tmp_path / "root-link", "data/train.jsonl") == (root / "data" / "train.jsonl").resolve()


def test_refused_path_error_maps_to_data_gate_exit_code(store):
    root, _ = store
    with pytest.raises(UnsafePathError) as exc:
        check_store_path(root, "../x")
    assert exc.value.exit_code == 1 and "../x" in str(exc.value)


# ---------------------------------------------------------------- glob_match

@pytest.mark.parametrize("rel, pattern, expected", [
    ("data/train.jsonl", "data/*.jsonl", True),
    ("data/sub/train.jsonl", "data/*.jsonl", False),
    ("data/sub/train.jsonl", "data/**/*.jsonl", True),
    ("data/train.jsonl", "data/**/*.jsonl", True),
    ("data/a/b/c.txt", "data/**", True),
    ("data", "data/**", True),
    ("database/x", "data/**", False),
    ("x/y/z.safetensors", "**/*.safetensors", True),
    ("z.safetensors", "**/*.safetensors", True),
    ("a/b", "**", True),
    ("a/b", "*", False),
    ("ab", "a?", True),
    ("a/", "a?", False),
    ("file1.txt", "file[0-9].txt", True),
    ("filex.txt", "file[!0-9].txt", True),
    ("file/.txt", "file[!0-9].txt", False),
    ("a.b", "a?b", True),
    ("a+b", "a+b", True),
    ("aab", "a+b", False),
    ("[x", "[x", True),
    ("a/b/c/d", "a/**/d", True),
    ("a/d", "a/**/d", True),
    ("ad", "a/**/d", False),
    ("a/xbc", "a/x**", True),
])
def test_glob_match_semantics(rel, pattern, expected):
    assert glob_match(rel, [pattern]) is expected


def test_glob_match_any_of_several_patterns():
    assert glob_match("data/x.csv", ["*.md", "data/*.csv"])
    assert not glob_match("data/x.csv", [])
    assert glob_match("./data/x.csv", "data/*.csv")


def test_symlinked_blobs_like_the_hf_cache_are_followed(tmp_path):
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir(), snap.mkdir()
    valid_st(blobs / "abc123")
    (snap / "model.safetensors").symlink_to(blobs / "abc123")
    assert check_weights_dir(snap) == ["model.safetensors"]


def test_fifo_or_dangling_link_in_weights_dir_is_refused(tmp_path):
    os.mkfifo(tmp_path / "model.safetensors")
    with pytest.raises(UnsafeWeightsError, match="not a regular file"):
        check_weights_dir(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.safetensors").symlink_to(tmp_path / "gone")
    with pytest.raises(UnsafeWeightsError, match="not a regular file"):
        check_weights_dir(tmp_path)


def test_pickle_behind_a_symlinked_directory_is_found_and_loops_end(tmp_path, marker):
    model, elsewhere = tmp_path / "model", tmp_path / "elsewhere"
    model.mkdir(), elsewhere.mkdir()
    valid_st(model / "model.safetensors")
    (model / "loop").symlink_to(model, target_is_directory=True)
    assert check_weights_dir(model) == ["model.safetensors"]
    (elsewhere / "weights.dat").write_bytes(hostile_pickle(marker))
    (model / "extra").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeWeightsError, match="would execute code"):
        check_weights_dir(model)
