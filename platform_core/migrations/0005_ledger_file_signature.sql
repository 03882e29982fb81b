-- What a landing file looked like when it was loaded (its size is file_size):
-- modification and inode-change times in nanoseconds, from the descriptor that
-- was hashed. A later run skips a file whose name, size and both times still
-- match without reading it again (docs/ingestion.md, "Files already loaded").
-- Empty for rows loaded before this migration and for files that had changed
-- less than two seconds before they were read (their times cannot yet be
-- trusted); the next run that hashes such a file fills them in.
alter table raw.ingest_batches
add column if not exists file_mtime_ns bigint,
add column if not exists file_ctime_ns bigint;
