"""Object-store side of the integration tests when the warehouse is on an S3-compatible
server: copies a table's objects down so that the tests read the exact bytes sluice wrote,
and overwrites objects for the tests that damage a file on purpose.

    s3_objects.py download s3://bucket/prefix/ LOCAL_DIR
    s3_objects.py overwrite s3://bucket/prefix/ TEXT
    s3_objects.py put s3://bucket/key TEXT
    s3_objects.py bucket s3://bucket/

Endpoint and credentials come from the standard AWS_* environment variables.
"""
import os
import sys
from urllib.parse import urlparse

import boto3


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )


def objects(s3, url):
    u = urlparse(url)
    bucket, prefix = u.netloc, u.path.lstrip("/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield bucket, prefix, o["Key"]


def main():
    verb, url = sys.argv[1], sys.argv[2]
    if verb == "put":
        u = urlparse(url)
        client().put_object(Bucket=u.netloc, Key=u.path.lstrip("/"), Body=sys.argv[3].encode())
        print(1)
        return
    if verb == "bucket":
        # Each test project gets a bucket of its own: the S3-compatible test server lists a
        # prefix by walking every key of the bucket, so one bucket shared by the whole
        # suite makes every listing slower as the suite goes on.
        client().create_bucket(Bucket=urlparse(url).netloc)
        print(1)
        return
    if not url.endswith("/"):
        url += "/"
    s3 = client()
    n = 0
    for bucket, prefix, key in objects(s3, url):
        if verb == "download":
            dest = os.path.join(sys.argv[3], key[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            s3.download_file(bucket, key, dest)
        elif verb == "overwrite":
            s3.put_object(Bucket=bucket, Key=key, Body=sys.argv[3].encode())
        else:
            sys.exit(f"unknown verb {verb}")
        n += 1
    print(n)


main()
