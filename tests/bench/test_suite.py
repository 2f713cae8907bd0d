"""The benchmark suite's bookkeeping: summaries found, medians and in-run ratios right."""

from __future__ import annotations

import json

import pytest

from bench import suite


def summary(**values: float) -> dict:
    """A summary with a reference figure and one compared with it."""
    return {
        "bench": "ingest_http",
        "figures": [
            {"name": "reference", "value": values["reference"], "unit": "records/s"},
            {
                "name": "thingwire",
                "value": values["thingwire"],
                "unit": "records/s",
                "target": ">= 0.3x reference",
                "ratio_to": "reference",
            },
        ],
    }


def test_the_summary_is_the_last_json_line_with_figures() -> None:
    stdout = "\n".join(
        [
            "| a table | for people |",
            json.dumps({"figures": [{"name": "old", "value": 1}]}),
            '{"not": "a summary"}',
            json.dumps(summary(reference=10, thingwire=5)),
            "",
        ]
    )
    assert [f["name"] for f in suite.parse_summary(stdout)["figures"]] == ["reference", "thingwire"]


def test_output_without_a_summary_fails_clearly() -> None:
    with pytest.raises(suite.BenchFailed, match="no summary line"):
        suite.parse_summary("a table\n{broken json\n")


def test_ratios_are_taken_within_each_run_then_the_median() -> None:
    figures: dict = {}
    # Run 2 is slow on both sides (a loaded machine): its ratio is still 0.5.
    for reference, thingwire in [(100, 50), (40, 20), (100, 30)]:
        suite.collect(figures, "ingest_http", summary(reference=reference, thingwire=thingwire))
    compared = figures[("ingest_http", "thingwire")]
    assert compared.values == [50, 20, 30]
    assert compared.ratios == [0.5, 0.5, 0.3]
    rows = suite.table(list(figures.values())).splitlines()
    assert rows[-1].split(" | ") == [
        "| ingest_http",
        "thingwire",
        "30.0",
        "records/s",
        "3 (20.0-50.0)",
        "0.50x",
        ">= 0.3x reference |",
    ]
    assert rows[-2].startswith("| ingest_http | reference | 100 | records/s | 3 (40.0-100) |  |")
