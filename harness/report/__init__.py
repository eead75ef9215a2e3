"""Report: tables and figures from stored records only (never from models).

load (records -> one frame) -> rules (which point a paper would report) ->
buckets / paper_tables / experiments -> tables and figures -> build (all of it)."""
