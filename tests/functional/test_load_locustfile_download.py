"""The load image's entrypoint takes the user's locustfile from ``RESGATE_LOCUSTFILE``: an ``s3://`` object
is downloaded (here from moto's S3), a path must exist in the image, and nothing given means the bundled
paperbroker locustfile."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from loadgen.run import resolve_locustfile
from resgate.contract.errors import ConfigError, GateError
from tests.functional.support import REGION

BODY = "from locust import HttpUser, task\n\n\nclass U(HttpUser):"
BODY += "\n    @task\n    def t(self):\n        pass\n"


def test_an_s3_locustfile_is_downloaded_into_the_work_dir_with_its_name(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="load-files")
    s3.put_object(Bucket="load-files", Key="shop/locustfile.py", Body=BODY.encode())

    path = resolve_locustfile("s3://load-files/shop/locustfile.py", tmp_path / "work")

    assert path == tmp_path / "work" / "locustfile.py" and path.read_text() == BODY


def test_a_missing_s3_object_is_a_gate_error_naming_it(tmp_path: Path) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="load-files")
    with pytest.raises(GateError, match=r"s3://load-files/nope\.py"):
        resolve_locustfile("s3://load-files/nope.py", tmp_path)


def test_a_path_in_the_image_must_exist_and_nothing_means_the_bundled_locustfile(tmp_path: Path) -> None:
    mine = tmp_path / "mine.py"
    mine.write_text(BODY)
    assert resolve_locustfile(str(mine), tmp_path) == mine
    assert resolve_locustfile("  ", tmp_path) is None
    with pytest.raises(ConfigError) as e:
        resolve_locustfile(str(tmp_path / "absent.py"), tmp_path)
    assert e.value.where == "RESGATE_LOCUSTFILE"


@pytest.mark.parametrize("value", ["s3://load-files/", "s3://load-files/readme.txt", "s3:///x.py"])
def test_an_s3_uri_that_names_no_python_object_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError):
        resolve_locustfile(value, tmp_path)
