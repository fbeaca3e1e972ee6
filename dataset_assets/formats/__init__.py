"""The files a finished dataset is written as, one writer per format a training library reads.

Every writer takes the dataset's images one at a time, in tier and source order, and uploads its
files when closed, so no format holds more than one shard or one batch in memory. Paths inside the
files are relative to the dataset root (`datasets/<request_id>/`), except where the reading library
wants them relative to the file itself (Hugging Face `metadata.jsonl`, the WebDataset index).
"""
