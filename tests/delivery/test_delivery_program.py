"""[[channels]] in the program file: owners cross-checked, secrets only by reference, clear errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from _dlv_helpers import program_with
from insightroi.delivery import first_due
from insightroi.errors import ProgramError

SLACK = '[[channels]]\nname = "ops-chat"\nkind = "slack"\nowners = ["logistics", "support"]\nurl = "env:SLACK_URL"\n'


def test_channels_parse_and_route_by_owner():
    p = program_with(SLACK + '\n[[channels]]\nname = "qa-mail"\nkind = "email"\nowners = ["product_quality"]\n'
                             'smtp_host = "127.0.0.1"\nsmtp_port = 2525\nfrom = "alerts@example.com"\n'
                             'to = ["qa@example.com"]\ndigest = "daily"\nquiet_hours = { start = "22:00", end = "07:00" }\n')
    assert [c.name for c in p.channels] == ["ops-chat", "qa-mail"]
    assert [c.name for c in p.channels_for("support")] == ["ops-chat"]
    assert p.channels_for("marketing") == []
    assert p.channels[1].from_address == "alerts@example.com"


def test_the_praise_stream_is_an_owner_a_channel_can_name():
    # Praise spikes go to the positive-theme stream, never to a topic's owner (insights/_spikes.py).
    p = program_with(SLACK.replace('"support"]', '"positive-themes"]'))
    assert [c.name for c in p.channels_for("positive-themes")] == ["ops-chat"]
    assert p.channels_for("support") == []


@pytest.mark.parametrize("block, message", [
    (SLACK.replace('"support"]', '"suport"]'), "channels[0].owners: 'suport' owns no topic or KPI"),
    (SLACK + "\n" + SLACK, "channel names must be unique; repeated: ['ops-chat']"),
    ('[[channels]]\nname = "h"\nkind = "webhook"\nowners = ["support"]\nurl = "https://t.example.com/hook"\n',
     "needs secret"),
    ('[[channels]]\nname = "h"\nkind = "webhook"\nowners = ["support"]\nurl = "https://t.example.com/hook"\n'
     'secret = "hunter2-literal"\n', 'secret must name an environment variable ("env:NAME")'),
    ('[[channels]]\nname = "m"\nkind = "email"\nowners = ["support"]\nsmtp_host = "mx"\n', "needs from, to"),
    ('[[channels]]\nname = "s"\nkind = "slack"\nowners = ["support"]\nurl = "ftp://x"\n', "must be an http(s) address"),
    ('[[channels]]\nname = "s"\nkind = "sms"\nowners = ["support"]\nurl = "https://x"\n', "channels[0].kind"),
    (SLACK + 'quiet_hours = { start = "25:00", end = "07:00" }\n', "quiet_hours.start"),
])
def test_bad_channels_are_named(block, message):
    with pytest.raises(ProgramError) as exc:
        program_with(block)
    assert message in str(exc.value)
    assert "hunter2-literal" not in str(exc.value)  # a secret typed into the file is not echoed


def test_first_due_digest_quiet_hours_and_severity():
    p = program_with(SLACK + 'digest = "weekly"\nquiet_hours = { start = "22:00", end = "07:00", timezone = "Europe/Berlin" }\n')
    c = p.channels[0]
    wed_noon = datetime(2026, 12, 2, 12, 0)  # a Wednesday, UTC
    assert first_due(c, "medium", wed_noon) == datetime(2026, 12, 7, 6, 0)  # Monday 00:00 UTC is 01:00 Berlin: quiet until 07:00 (06:00 UTC)
    assert first_due(c, "high", wed_noon) == wed_noon  # urgent: no digest wait, and noon is not quiet
    late = datetime(2026, 12, 2, 22, 30)  # 23:30 Berlin
    assert first_due(c, "high", late) == datetime(2026, 12, 3, 6, 0)
    assert first_due(c, "critical", late) == late  # critical ignores quiet hours
