"""The docs' benchmark tables are rendered from the results a run writes."""

from benchmarks.tables import weighting_table

RESULT = {
    "ms_per_step": {
        "3_tasks": {"ew": 10.0, "uncertainty": 10.5, "pcgrad": 12.0,
                    "pcgrad+representation": 10.8},
        "6_tasks": {"ew": 20.0, "uncertainty": 19.0, "pcgrad": 27.0,
                    "pcgrad+representation": 21.0},
    },
    "ratio_to_ew": {
        "3_tasks": {"uncertainty": 1.05, "pcgrad": 1.2,
                    "pcgrad+representation": 1.08},
        "6_tasks": {"uncertainty": 0.95, "pcgrad": 1.35,
                    "pcgrad+representation": 1.05},
    },
}


def test_weighting_table_has_one_row_per_method_with_its_ratios():
    lines = weighting_table(RESULT).splitlines()
    assert lines[0].startswith("| method | 3 tasks: ms/step | 3 tasks: x EW |")
    assert lines[2:] == [
        "| ew | 10.0 | 1.00 |  | 1.00 |  |  |",
        "| uncertainty | 10.5 | 1.05 |  | 0.95 |  |  |",
        "| pcgrad | 12.0 | 1.20 | 1.08 | 1.35 | 1.05 | 2.0x |",
    ]
