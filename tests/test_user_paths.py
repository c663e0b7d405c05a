"""The paths a user takes right after the demo (issue 25): a one-epoch run, Ctrl-C, the spellings --dry-run prints,
a profile's skip, predict on a folder as found, a capture's depth unit and its split. Each starts where the user
starts: the command line, the shipped profiles and notebooks, the embedded sample frames."""

from __future__ import annotations

import json

from depthlib.paths import project_root
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


# a --set for a notebook the profile skips blamed --only

def test_a_notebook_the_profile_skips_is_named_with_the_skip(capsys):
    assert main(["--profile", "own", "--set", "02:epochs=1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--set 02:epochs=1: profile 'own' skips 02_train ([pipeline] skip" in err and "--only" not in err, err
    assert main(["--profile", "own", "--only", "02", "--dry-run"]) == 2      # a run of nothing at all
    assert "profile 'own' skips 02_train" in capsys.readouterr().err
    assert main(["--profile", "own", "--only", "02", "03", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert list(json.loads(out)) == ["03_finetune"] and "profile 'own' skips 02_train" in err


def test_a_profile_given_as_a_toml_path_runs_into_runs_its_name(tmp_path):
    profile = tmp_path / "mine.toml"
    profile.write_text("[02_train]\nepochs = 2\n")
    assert make_plan(str(profile)).run_dir == project_root() / "runs" / "mine"     # it was the .toml file itself
