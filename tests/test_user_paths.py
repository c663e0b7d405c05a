"""The paths a user takes right after the demo (issue 25): a one-epoch run, Ctrl-C, the spellings --dry-run prints,
a profile's skip, predict on a folder as found, a capture's depth unit and its split. Each starts where the user
starts: the command line, the shipped profiles and notebooks, the embedded sample frames."""

from __future__ import annotations

import json

from depthlib.pipeline import main, make_plan


# --set 03:freeze_encoder_bn=true, the spelling the profiles and --dry-run print, was refused

def test_set_takes_values_as_dry_run_prints_them(capsys):
    for profile in ("ci", "own"):
        assert main(["--profile", profile, "--dry-run"]) == 0
        steps = json.loads(capsys.readouterr().out)
        overrides = [f"{nb[:2]}:{k}={json.dumps(v)}" for nb, params in steps.items() for k, v in params.items()]
        assert make_plan(profile, overrides=overrides).steps == steps
    assert any(o.startswith("03:freeze_encoder_bn=") for o in overrides)     # own's, as --dry-run printed it
    for text, value in (("true", True), ("false", False), ("True", True)):
        assert make_plan("own", overrides=[f"03:freeze_encoder_bn={text}"]).steps["03_finetune"]["freeze_encoder_bn"] is value
    assert main(["--profile", "own", "--set", "03:freeze_encoder_bn=yes", "--dry-run"]) == 2
    assert "'freeze_encoder_bn' must be bool" in capsys.readouterr().err
