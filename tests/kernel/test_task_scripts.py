"""The Lua scripts spell the final statuses themselves: they must be `FINAL_STATUSES`."""

import re

from inferq.tasks import store
from inferq.tasks.state import FINAL_STATUSES


def test_scripts_that_test_for_a_final_status_name_every_final_status() -> None:
    scripts = [store._MARK_RUNNING, store._FINISH]
    for script in scripts:
        [condition] = re.findall(r"^\s*if (status == .*?) (?:or \(|then)", script, re.M)
        named = set(re.findall(r"status == '(\w+)'", condition))
        assert named == {status.value for status in FINAL_STATUSES}
