"""Test helper run with the services' Python (tests/services/start.sh).

  helper.py bucket ENDPOINT NAME      create an S3 bucket on the moto server
  helper.py container ENDPOINT NAME   create a blob container on Azurite
  helper.py export LAKE OUT TABLE...  read each Delta table of the lake with the `deltalake`
                                      package (a reader independent of govlake) and write it
                                      to OUT/TABLE.parquet with pyarrow, types as read

Everything talks to 127.0.0.1 only; the credentials are the emulators' published ones.
"""

import os
import sys

AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def bucket(endpoint, name):
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="govlake-test",
        aws_secret_access_key="govlake-test",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=name)


def container(endpoint, name):
    from azure.storage.blob import BlobServiceClient

    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint}/devstoreaccount1;"
    )
    BlobServiceClient.from_connection_string(conn).create_container(name)


def export(lake, out, tables):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    os.makedirs(out, exist_ok=True)
    for table in tables:
        dt = DeltaTable(os.path.join(lake, table))
        data = pa.table(dt.to_pyarrow_table())
        pq.write_table(data, os.path.join(out, f"{table}.parquet"))
        print(f"{table}\t{data.num_rows}\t{dt.version()}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "bucket":
        bucket(*args)
    elif cmd == "container":
        container(*args)
    elif cmd == "export":
        export(args[0], args[1], args[2:])
        # Skip interpreter teardown: deltalake's native threads can abort the process at exit
        # ("terminate called without an active exception") on a loaded machine, after every
        # file was written.
        sys.stdout.flush()
        os._exit(0)
    else:
        sys.exit(f"unknown command {cmd}")
