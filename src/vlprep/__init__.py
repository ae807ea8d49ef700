"""vlprep: turn multiple-choice visual-QA parquet into verl / TRL training data."""
