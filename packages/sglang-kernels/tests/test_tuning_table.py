"""Measured launch tables: the nearest bucket wins, the override folder beats the packaged one."""

from __future__ import annotations

import json

from sglang.kernels import tuning


def test_lookup_takes_the_nearest_bucket_by_ratio(override):
    table = {"shape": {"1": "one", "16": "sixteen", "256": "big"}}
    (override / tuning.table_name("k", "DEV")).write_text(json.dumps(table))
    assert tuning.lookup("k", "shape", 1, "DEV") == "one"
    assert tuning.lookup("k", "shape", 3, "DEV") == "one"  # log-distance: 3 is nearer 1 than 16
    assert tuning.lookup("k", "shape", 6, "DEV") == "sixteen"
    assert tuning.lookup("k", "shape", 5000, "DEV") == "big"
    assert tuning.lookup("k", "other", 1, "DEV") is None
    assert tuning.lookup("k", "shape", 1, "OTHER_DEV") is None


def test_device_key_is_a_file_name_part():
    key = tuning.device_key()
    assert key and all(c.isalnum() or c == "_" for c in key)
