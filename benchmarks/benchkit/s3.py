"""The --s3 mode: its settings from the environment, and a minimal S3 client (SigV4, path-style)
for repository sizes and clean-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import os
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .s3moto import RequestCounter


def endpoint_url(endpoint: str) -> str:
    """SPARE_ENDPOINT as a URL: plain host or host:port means https."""
    if endpoint.startswith(("http://", "https://")):
        return endpoint.rstrip("/")
    return "https://" + endpoint.rstrip("/")


class S3Client:
    def __init__(self, url: str, access_key: str, secret_key: str, region: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.netloc = parts.netloc
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    def request(
        self, method: str, bucket: str, key: str = "", query: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        quote = urllib.parse.quote
        path = "/" + quote(bucket, safe="")
        if key:
            path += "/" + quote(key, safe="/~")
        cq = "&".join(
            f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted((query or {}).items())
        )
        amz_date = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        payload_hash = hashlib.sha256(b"").hexdigest()
        headers = {
            "host": self.netloc,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                path,
                cq,
                "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        k = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.netloc, timeout=120)
        try:
            conn.request(method, path + ("?" + cq if cq else ""), headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def list_objects(self, bucket: str) -> list[tuple[str, int, str]]:
        """(key, size, ETag) of every object in the bucket; none if it does not exist."""
        out: list[tuple[str, int, str]] = []
        token = ""
        while True:
            query = {"list-type": "2"}
            if token:
                query["continuation-token"] = token
            status, body = self.request("GET", bucket, query=query)
            if status == 404:
                return out
            if status != 200:
                raise OSError(f"S3 list {bucket}: HTTP {status}: {body[:200]!r}")
            xml = ET.fromstring(body)
            for item in xml.iterfind("{*}Contents"):
                out.append(
                    (
                        item.findtext("{*}Key") or "",
                        int(item.findtext("{*}Size") or 0),
                        item.findtext("{*}ETag") or "",
                    )
                )
            token = xml.findtext("{*}NextContinuationToken") or ""
            if (xml.findtext("{*}IsTruncated") or "false") != "true" or not token:
                return out

    def remove_bucket(self, bucket: str) -> None:
        for key, _, _ in self.list_objects(bucket):
            self.request("DELETE", bucket, key)
        self.request("DELETE", bucket)


@dataclass
class S3Config:
    endpoint: str
    url: str
    access_key: str
    secret_key: str
    region: str
    #: Where the benchmark's own requests (sizes, clean-up) go, if not to ``url``: with --s3 moto
    #: the tools talk to the counting proxy, the benchmark to moto itself.
    admin_url: str = ""
    #: Counts the tools' requests (--s3 moto only).
    counter: RequestCounter | None = None

    def client(self) -> S3Client:
        return S3Client(self.admin_url or self.url, self.access_key, self.secret_key, self.region)


def s3_config(args: argparse.Namespace) -> S3Config:
    missing = [
        v
        for v in ("SPARE_ENDPOINT", "SPARE_ACCESS_KEY", "SPARE_SECRET_KEY")
        if not os.environ.get(v)
    ]
    if missing:
        raise SystemExit(f"--s3 needs {', '.join(missing)} in the environment")
    endpoint = os.environ["SPARE_ENDPOINT"]
    if endpoint.startswith("file://"):
        raise SystemExit("--s3 needs an S3 endpoint in SPARE_ENDPOINT, not file://")
    return S3Config(
        endpoint=endpoint,
        url=endpoint_url(endpoint),
        access_key=os.environ["SPARE_ACCESS_KEY"],
        secret_key=os.environ["SPARE_SECRET_KEY"],
        region=args.s3_region,
    )
