from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from conveyor.supply.oci.model import ImageRef
from conveyor.supply.sbom import Package, packages_in_layers, sbom_for_image

SITE = "usr/lib/python3.11/site-packages"
DIGEST = "sha256:" + "12" * 32
CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

X_METADATA = b"""Metadata-Version: 2.1
Name: x
Version: 1.0
Summary: The x library
Home-page: https://x.example.org
License: MIT
Requires-Dist: packaging>=20
Requires-Dist: pytest; extra == "test"
"""


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def x_files(version: str = "1.0", metadata: bytes = X_METADATA) -> dict[str, bytes]:
    module = b"print('x')\n"
    record = (
        f"x/__init__.py,{record_hash(module)},{len(module)}\n"
        f"x-{version}.dist-info/METADATA,{record_hash(metadata)},{len(metadata)}\n"
        f"x-{version}.dist-info/RECORD,,\n"
    ).encode()
    return {
        "x/__init__.py": module,
        f"x-{version}.dist-info/METADATA": metadata,
        f"x-{version}.dist-info/RECORD": record,
    }


def packaging_files() -> dict[str, bytes]:
    """The real dist-info of `packaging` from this virtualenv."""
    dist = distribution("packaging")
    return {
        str(item): Path(str(dist.locate_file(item))).read_bytes()
        for item in dist.files or []
        if ".dist-info/" in str(item)
    }


def layer(files: dict[str, bytes], under: str = "", gzip: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{under}/{name}" if under else name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def image_layers() -> list[bytes]:
    return [layer(packaging_files(), SITE), layer(x_files(), "app/deps")]


def by_name(packages: list[Package]) -> dict[str, Package]:
    return {package.name: package for package in packages}


def test_packages_are_read_from_dist_info_anywhere_in_the_layers() -> None:
    packages = by_name(packages_in_layers(image_layers()))

    x = packages["x"]
    assert (x.version, x.license, x.summary) == ("1.0", "MIT", "The x library")
    assert x.home_page == "https://x.example.org"
    assert x.location == "app/deps/x-1.0.dist-info"
    assert x.requires == ("packaging",)  # the test extra is not a runtime dependency
    assert x.metadata_sha256 == hashlib.sha256(X_METADATA).hexdigest()
    module = next(f for f in x.files if f.path == "x/__init__.py")
    assert module.sha256 == hashlib.sha256(b"print('x')\n").hexdigest()
    assert module.size == len(b"print('x')\n")

    real = packages["packaging"]
    dist = distribution("packaging")
    assert real.version == dist.version
    assert real.location == f"{SITE}/packaging-{dist.version}.dist-info"
    init = next(f for f in real.files if f.path == "packaging/__init__.py")
    expected = hashlib.sha256(Path(str(dist.locate_file("packaging/__init__.py"))).read_bytes())
    assert init.sha256 == expected.hexdigest()


def test_a_later_layer_overrides_an_earlier_one() -> None:
    newer = X_METADATA.replace(b"Version: 1.0", b"Version: 1.1")
    layers = [layer(x_files()), layer({"x-1.0.dist-info/METADATA": newer})]
    assert [p.version for p in packages_in_layers(layers)] == ["1.1"]


def test_whiteouts_remove_packages_of_lower_layers() -> None:
    upgraded = x_files("2.0", X_METADATA.replace(b"Version: 1.0", b"Version: 2.0"))
    removed = layer({".wh.x-1.0.dist-info": b"", **upgraded}, "app/deps")
    layers = [layer(x_files(), "app/deps"), removed]
    assert [(p.name, p.version) for p in packages_in_layers(layers)] == [("x", "2.0")]


def test_an_opaque_whiteout_hides_the_whole_lower_directory() -> None:
    base = [layer(x_files(), "app/deps"), layer(packaging_files(), SITE)]
    hidden = layer({".wh..wh..opq": b""}, "app/deps")
    assert [p.name for p in packages_in_layers([*base, hidden])] == ["packaging"]


def test_plain_tar_layers_and_broken_dist_info_are_handled() -> None:
    broken = {"broken-0.dist-info/METADATA": b"Metadata-Version: 2.1\nSummary: no name\n"}
    packages = packages_in_layers([layer({**x_files(), **broken}, gzip=False)])
    assert [p.name for p in packages] == ["x"]


def sbom(packages: list[Package], digest: str = DIGEST) -> dict[str, Any]:
    data = sbom_for_image(ImageRef("shop", tag="abc123"), digest, packages, created=CREATED)
    result: dict[str, Any] = json.loads(data)
    return result


def test_sbom_is_valid_cyclonedx_1_6() -> None:
    data = sbom_for_image(
        ImageRef("shop", tag="abc123"), DIGEST, packages_in_layers(image_layers()), created=CREATED
    )
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None


def test_sbom_describes_the_image_and_its_packages() -> None:
    bom = sbom(packages_in_layers(image_layers()))

    assert bom["specVersion"] == "1.6"
    assert bom["metadata"]["timestamp"] == "2024-05-01T12:00:00+00:00"
    image = bom["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "shop", "abc123")
    assert image["hashes"] == [{"alg": "SHA-256", "content": "12" * 32}]
    components = {c["name"]: c for c in bom["components"]}
    x = components["x"]
    assert x["purl"] == "pkg:pypi/x@1.0"
    assert x["type"] == "library"
    assert x["licenses"] == [{"license": {"id": "MIT"}}]
    assert x["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(X_METADATA).hexdigest()}]
    assert x["evidence"]["occurrences"] == [{"location": "/app/deps/x-1.0.dist-info"}]
    assert (
        components["packaging"]["purl"] == f"pkg:pypi/packaging@{distribution('packaging').version}"
    )
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert graph[image["bom-ref"]] == {x["bom-ref"], components["packaging"]["bom-ref"]}
    assert graph[x["bom-ref"]] == {components["packaging"]["bom-ref"]}


def test_the_same_image_gives_the_same_sbom_bytes() -> None:
    packages = packages_in_layers(image_layers())
    ref = ImageRef("shop", tag="abc123")
    first = sbom_for_image(ref, DIGEST, packages, created=CREATED)
    again = sbom_for_image(ref, DIGEST, packages_in_layers(image_layers()), created=CREATED)
    assert first == again
    other = sbom(packages, "sha256:" + "34" * 32)
    assert other["serialNumber"] != json.loads(first)["serialNumber"]


def test_the_same_release_installed_twice_gets_distinct_refs() -> None:
    layers = [layer(x_files(), "app/deps"), layer(x_files(), "opt/venv")]
    data = sbom_for_image(
        ImageRef("shop", tag="abc123"), DIGEST, packages_in_layers(layers), created=CREATED
    )
    refs = [c["bom-ref"] for c in json.loads(data)["components"]]
    assert len(set(refs)) == 2
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
