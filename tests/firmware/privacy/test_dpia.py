"""The DPIA states what the typed config says: every fact it prints is read from the key it names."""

from __future__ import annotations

from pathlib import Path

from firmware.config import UmbraConfig, load, parse
from firmware.privacy.dpia import FACT_KEYS, facts, generate_dpia
from firmware.samples.authorization import Grant

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_700_000_000.0

SHOP = """
[device]
id = "shop-7"
[privacy]
profile = "aggregates"
k = 7
epsilon = 0.5
daily_epsilon = 8.0
window_s = 600
[pseudonym]
rotate_s = 1800.0
[quantize]
grid_m = 1.5
time_bucket_s = 10
[samples]
retention_days = 7
jpeg_quality = 40
[authorization]
max_rate_per_hour = 6
[flowgroups]
enabled = true
min_count = 9
window_s = 300
"""


def _get(cfg: UmbraConfig, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def test_every_fact_is_the_value_at_its_key() -> None:
    for cfg in (parse(SHOP), load(ROOT / "bench" / "configs" / "pets09.toml"), UmbraConfig()):
        f = facts(cfg)
        for name, key in FACT_KEYS.items():
            assert f[name].key == key and f[name].value == _get(cfg, key), name
        assert f["epsilon_day"].value == {s: float(v) for s, v in cfg.privacy.budgets().items()}


def test_the_dpia_states_the_configured_values() -> None:
    cfg = parse(SHOP)
    md = generate_dpia(cfg, grants=[Grant("tok-1", "shop-7", 4, T0, T0 + 86400)], now=T0)
    assert md.startswith("# Data-protection impact assessment: Umbra sensor shop-7")
    assert "**aggregates** (only aggregates leave)" in md
    assert "k = 7" in md and "epsilon = 0.5 per release, 8 per day per stream; windows of 600 s" in md
    assert "quantized tracks (pseudonym" not in md  # the aggregates profile sends no tracks
    assert "at most 7 days" in md and "q40" in md and "6 per hour" in md and "token tok-1: 4 per hour" in md
    assert "per zone and window of 300 s" in md and "padded to at least 9" in md


def test_the_tracks_profile_states_cells_buckets_and_rotation() -> None:
    cfg = parse(SHOP.replace('profile = "aggregates"', 'profile = "tracks"'))
    md = generate_dpia(cfg)
    assert "**tracks**" in md and "rotated every 1800 s" in md and "cells of 1.5 m, time buckets of 10 s" in md


def test_the_tracks_profile_says_what_the_records_crossings_reveal() -> None:
    """Issue 17: umbra.track/2 records carry their bucket's confirmed crossings; the DPIA names the lines and
    says what that field shows (line, direction, count in a bucket) and what it does not (order, time)."""
    tracks = SHOP.replace('profile = "aggregates"', 'profile = "tracks"')
    md = generate_dpia(parse(tracks))
    assert "no count lines are configured, so no record carries a crossing" in md
    md = generate_dpia(parse(tracks + '[[geometry.lines]]\nname = "door"\na = [0.0, 0.0]\nb = [3.0, 0.0]\n'))
    assert "crossings of the 1 count line(s) (door)" in md and "within the 10 s bucket" in md
    assert "not the order of two crossings, not when within the bucket" in md
    assert "count-line crossings" not in generate_dpia(parse(SHOP))  # aggregates profile: no track records


def test_the_default_profile_is_the_one_the_config_has() -> None:
    """The old DPIA guessed 'tracks' when it found no key; the typed config's default is 'aggregates'."""
    md = generate_dpia(UmbraConfig())
    assert UmbraConfig().privacy.profile == "aggregates" and "**aggregates**" in md


def test_dpia_of_the_real_config_states_the_daily_budget_the_accountant_derives() -> None:
    """privacy.daily_epsilon = 0 means epsilon times the windows of a day: the DPIA says that number."""
    cfg = load(ROOT / "bench" / "configs" / "pets09.toml")
    md = generate_dpia(cfg)
    assert "epsilon = 1.0 per release, 1440 (epsilon times the 1440 windows of a day) per day" in md
    assert cfg.privacy.budgets()["occupancy"] == 1440


def test_the_running_totals_row_states_their_composition() -> None:
    """With the tree on, the composition row states the blocks per step, the level split and its scales (read
    from level_scales), and that their loss sums to at most epsilon; evenly split it says so."""
    from firmware.privacy.dpia import composition

    for weight, says in ((0, "noised blocks of scale sensitivity x 11 / epsilon"),
                         (2, "level weight 2: scales 7.85938 to 128.297 at 2 crossings")):
        cfg = parse(SHOP.replace("window_s = 600\n[pseudonym]",
                                 f"window_s = 600\ntree_enabled = true\ntree_level_weight = {weight}\n[pseudonym]"))
        row = [r for r in composition(facts(cfg)) if "running totals" in r]
        assert len(row) == 1 and says in row[0], row
        assert "at most 11" in row[0] and "at most epsilon, exactly" in row[0]


def test_the_dpia_states_each_aggregate_sensitivity() -> None:
    cfg = parse(SHOP)
    md = generate_dpia(cfg, grants=[], now=T0)
    p = cfg.privacy
    assert f"at most {p.presence_cap_s} s, never more than the window's S samples" in md
    assert "moves by at most c / S <= 1 person per window, not per sample" in md
    assert f"epsilon x {p.occupancy_split[0]:g} goes to it" in md
    assert f"line flow: at most {p.crossing_cap} crossings a person" in md
    assert f"heatmap: at most {p.heat_cap_s} people-seconds a person" in md
