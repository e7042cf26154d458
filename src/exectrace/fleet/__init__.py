"""exectrace's fleet side: shipping trace files to S3-compatible object storage
and reading a fleet's history back (``exectrace ship``, ``exectrace ls s3://``,
``summary s3://``, ``debug-zip --from s3://``, ``fleet top``).

Nothing here is imported by ``import exectrace`` or by autostart: a traced
process never loads an S3 client (boto3/botocore) or DuckDB. ``layout`` is pure
Python (URLs, key layout, times) and may be imported by the commands; ``s3``,
``ship``, ``index`` and ``remote`` import boto3/DuckDB and are only imported by
the commands that need them, in the process that runs the command.
"""
