"""Evidently's DataDriftPreset on the numeric and categorical features of
the calls benches/drift_speed.rs generated (a CSV per window), timed the
way a user runs it: Report(...).run(current, reference). Prints
RUN_SECONDS <s> (run() only; reading the CSVs is not timed) and the
number of drifted columns. Run by benches/drift_speed.rs."""

import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

NUMERIC = [
    "latency_ms", "ttft_ms", "cost", "input_tokens", "output_tokens",
    "question_chars", "question_words", "answer_chars", "answer_words",
    "history_turns", "feedback_score",
]
CATEGORICAL = [
    "question_language", "product", "status", "json_valid", "refusal",
    "upstream_model", "feedback_label",
]

ref_df = pd.read_csv(sys.argv[1], keep_default_na=True)
cur_df = pd.read_csv(sys.argv[2], keep_default_na=True)
for df in (ref_df, cur_df):
    for c in CATEGORICAL:
        df[c] = df[c].astype(str)
definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
ref = Dataset.from_pandas(ref_df, data_definition=definition)
cur = Dataset.from_pandas(cur_df, data_definition=definition)

started = time.perf_counter()
cpu = time.process_time()
result = Report([DataDriftPreset()]).run(cur, ref)
elapsed = time.perf_counter() - started
print(f"RUN_SECONDS {elapsed:.3f}")
print(f"run() CPU {time.process_time() - cpu:.3f} s")
summary = result.dict()
for metric in summary.get("metrics", [])[:1]:
    print(f"{metric.get('metric_id', '?')}: {metric.get('value')}")
print(f"rows {len(ref_df)} + {len(cur_df)}, columns {len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical")
