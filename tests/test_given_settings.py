"""What a record says the config gave a method."""
from __future__ import annotations


def test_records_carry_the_given_settings_typed(smoke_context):
    """A nested --config value reaches the job as a string; the record's
    method_config holds what the plugin's Settings made of it."""
    ctx = smoke_context("ltp")
    ctx.cfg["methods_config"]["ltp"] = {"theta_final": "0.02", "lambdas": ["0.1", "0.3"]}
    assert ctx.given_settings == {"theta_final": 0.02, "lambdas": [0.1, 0.3]}
