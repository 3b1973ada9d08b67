"""The frontend language: IR (`ir`), public functions (`api`), programs (`program`), the
interpreter (`interpreter`, `state`) and backends (`backend`). Import the API from `sglang`."""
