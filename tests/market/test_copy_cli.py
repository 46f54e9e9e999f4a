"""`silverlining copy` on its own, between two S3 endpoints with plain keys: streamed,
verified, resumable through its journal, incremental, and clear when it cannot go on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, NodeProcess

pytestmark = pytest.mark.timeout(600)


def test_copy_between_two_endpoints(tmp_path: Path) -> None:
    a, b = NodeProcess(tmp_path / "a"), NodeProcess(tmp_path / "b")
    a.start()
    b.start()
    try:
        ka, sa = a.new_credentials("alice")
        kb, sb = b.new_credentials("bob")
        src, dst = a.client(ka, sa), b.client(kb, sb)
        src.create_bucket(Bucket="photos")
        bodies = {f"img/{i}.jpg": os.urandom(i * 37) for i in range(50)}
        bodies["big.bin"] = os.urandom(20 * 1024 * 1024 + 1)  # several 8 MiB parts
        for key, body in bodies.items():
            src.put_object(Bucket="photos", Key=key, Body=body, Metadata={"n": str(len(body))})
        env = {**os.environ, "SRC_AWS_ACCESS_KEY_ID": ka, "SRC_AWS_SECRET_ACCESS_KEY": sa,
               "DST_AWS_ACCESS_KEY_ID": kb, "DST_AWS_SECRET_ACCESS_KEY": sb}
        journal = tmp_path / "journal.jsonl"
        args = [str(BIN), "copy", f"s3://photos@{a.endpoint}", f"s3://photos@{b.endpoint}",
                "--journal", str(journal)]

        out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        assert "51 object(s) copied and verified" in out.stdout
        for key, body in bodies.items():
            got = dst.get_object(Bucket="photos", Key=key)
            assert got["Body"].read() == body and got["Metadata"] == {"n": str(len(body))}

        again = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        assert "0 object(s) copied" in again.stdout and "51 already there" in again.stdout

        src.put_object(Bucket="photos", Key="img/new.jpg", Body=b"new")
        src.delete_object(Bucket="photos", Key="img/1.jpg")
        inc = subprocess.run([*args, "--delete"], env=env, capture_output=True, text=True,
                             check=True)
        assert "1 object(s) copied" in inc.stdout and "1 deleted" in inc.stdout
        keys = {o["Key"] for o in dst.list_objects_v2(Bucket="photos")["Contents"]}
        assert "img/new.jpg" in keys and "img/1.jpg" not in keys

        bad = subprocess.run([str(BIN), "copy", "photos", f"s3://photos@{b.endpoint}"],
                             env=env, capture_output=True, text=True)
        assert bad.returncode == 2 and "s3://BUCKET@" in bad.stderr
        wrong = subprocess.run(args, env={**env, "SRC_AWS_SECRET_ACCESS_KEY": "x" * 40},
                               capture_output=True, text=True)
        assert wrong.returncode == 1 and "Error:" in wrong.stderr
        assert "Traceback" not in wrong.stderr
    finally:
        a.stop()
        b.stop()
