"""Reading real lines of the shared public data in tests."""
import json

import pytest


def shared_lines(shared_data, name: str, pred=lambda row: True, n: int = 1) -> list[dict]:
    """The first `n` rows of shared-data file `name` for which `pred` holds (fails the test if fewer)."""
    out = []
    with open(shared_data / name, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if pred(row):
                out.append(row)
                if len(out) == n:
                    return out
    pytest.fail(f"{name}: fewer than {n} matching lines")
