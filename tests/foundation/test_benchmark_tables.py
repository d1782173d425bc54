"""The docs' benchmark tables are rendered from the results a run writes."""

from benchmarks.tables import text_pipeline_table
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


TEXT_RESULT = {
    "kmtl_rows_per_s": 400000.0, "reference_rows_per_s": 50000.0,
    "fed_over_reference": 8.0, "kmtl_epoch_s": 0.05, "reference_epoch_s": 0.4,
    "fit_features_s": 4.0, "reference_adapt_s": 1.0, "encode_frame_s": 0.7,
    "epochs_to_amortize": 2.0, "peak_rss_mb": 1234.4, "rows": 20000,
    "batch_size": 256, "epochs_timed": 3,
    "sequence_lengths": {"Title": 23, "Review Text": 229},
    "targets": {"fed_over_reference": ">= 5"},
}


def test_text_pipeline_table_rates_ratio_and_target():
    lines = text_pipeline_table(TEXT_RESULT).splitlines()
    assert lines[2].startswith("| rows/s fed (20,000 training rows, batches of 256")
    assert lines[2].endswith("| 400,000 | 50,000 | 8.0x | >= 5 (met) |")
    assert "| 4.0x |" in lines[4]
    assert "23 Title + 229 Review Text" in lines[5]
    assert lines[6] == ("| epochs until encoding once has paid for itself | 2.0 "
                        "| | | |")


def test_text_pipeline_table_marks_a_missed_target():
    slow = {**TEXT_RESULT, "fed_over_reference": 4.5}
    assert text_pipeline_table(slow).splitlines()[2].endswith(
        "| 4.5x | >= 5 (**not met**) |")
