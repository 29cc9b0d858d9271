"""The Apache Kafka broker's jars, fetched from Maven Central once and cached under the local dir.

`deploy/kafka/pom.xml` names the broker and its logging backend; Maven copies their runtime classpath
into a lib directory per Kafka version. A lib directory counts as complete only once it holds the
marker file written after Maven succeeded, so an interrupted download is redone, never half used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import UserFacingError
from pipeline.settings import PROJECT_ROOT

KAFKA_VERSION = "3.9.1"
POM = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_PROPERTIES = PROJECT_ROOT / "deploy" / "kafka" / "log4j.properties"
_COMPLETE = ".complete"


def default_lib_dir(local_dir: Path, version: str = KAFKA_VERSION) -> Path:
    """Where the CLI and the test fixtures keep the jars: `<local_dir>/kafka-lib/<version>`."""
    return Path(local_dir) / "kafka-lib" / version


def jars_complete(lib_dir: Path) -> bool:
    return (lib_dir / _COMPLETE).is_file()


def ensure_kafka_jars(
    lib_dir: Path, version: str = KAFKA_VERSION, say: Callable[[str], None] = print
) -> Path:
    """Return `lib_dir`, filling it from Maven Central first if it is not complete.

    Maven writes into a private staging directory that is renamed into place at the end, so two
    concurrent callers never see a partial classpath. Raises `UserFacingError` if `mvn` is missing
    or fails.
    """
    lib_dir = Path(lib_dir)
    if jars_complete(lib_dir):
        return lib_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise UserFacingError(
            f"Kafka jars are not in {lib_dir} and Maven ('mvn') is not on PATH to fetch them; "
            "install Maven (e.g. apt-get install maven) and retry"
        )
    say("fetching Kafka jars from Maven Central (first run only)...")
    staging = lib_dir.with_name(f"{lib_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-q",
        "-B",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={staging}",
        "-f",
        str(POM),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise UserFacingError(
            f"fetching Kafka {version} jars with Maven failed (exit {result.returncode}):\n"
            + "\n".join(output)
        )
    (staging / _COMPLETE).write_text(version + "\n")
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(lib_dir)
    except OSError:
        # Someone else completed it meanwhile (or an incomplete leftover is in the way).
        if not jars_complete(lib_dir):
            shutil.rmtree(lib_dir, ignore_errors=True)
            staging.rename(lib_dir)
    shutil.rmtree(staging, ignore_errors=True)
    say(f"Kafka {version} jars cached in {lib_dir}")
    return lib_dir
